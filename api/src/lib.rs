//! CodeDeploy's API for the EC2/on-premises platform, as Gantry serves it: the shapes
//! requests and responses carry ([`model`], [`deployment`], [`target`], [`revision`]) and the exceptions errors
//! are named by ([`error`]). The control plane renders these types and the `gantry` CLI
//! reads them, so the two cannot drift apart; the AWS CLI reads the same JSON.
//!
//! No AWS SDK and no I/O: serde, and gantry-core's domain types.

pub mod deployment;
pub mod error;
pub mod model;
pub mod revision;
pub mod target;

pub use error::{ApiError, Exception};
