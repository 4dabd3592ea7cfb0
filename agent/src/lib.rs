//! The Gantry host agent: long-polls its command queue, downloads and unpacks revisions
//! with `gantry_core::bundle`, installs files, runs hooks and reports each lifecycle event.
//!
//! [`config`] reads the agent's configuration file; [`runner`] carries out one command
//! (its events, in order) through two ports, a revision source and a report sink, whose
//! adapters are [`aws`] (S3 and SQS) and [`github`] (commit tarballs), over [`net`]; [`install`] is
//! the Install event and [`hooks`] runs one hook script the way CodeDeploy's agent does.
//! The binary (`src/main.rs`) is the queue loop around them.

pub mod aws;
/// The HTTP stack and GitHub tarballs, shared with the control plane.
pub use gantry_fetch::{github, net};
pub mod beneath;
pub mod config;
pub mod hooks;
pub mod install;
pub mod private;
pub mod runner;
