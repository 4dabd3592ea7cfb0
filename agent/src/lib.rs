//! The Gantry host agent: long-polls its command queue, downloads and unpacks revisions
//! with `gantry_core::bundle`, installs files, runs hooks and reports each lifecycle event.
//!
//! It arrives with the host-agent issue; until then this crate ships no binary.
