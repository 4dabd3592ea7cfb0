//! The Gantry host agent: long-polls its command queue, downloads and unpacks revisions
//! with `gantry_core::bundle`, installs files, runs hooks and reports each lifecycle event.
//!
//! Built so far: [`config`], the agent's configuration file; [`hooks`], which runs one
//! hook script the way CodeDeploy's agent does; and [`install`], the Install event.
//! The queue loop, download and install arrive with the rest of the host-agent issue;
//! until then this crate ships no binary.

pub mod aws;
pub mod config;
pub mod hooks;
pub mod install;
pub mod runner;
