//! gantry-core: the rules of a Gantry deployment, with no AWS SDK and no network.
//!
//! - [`appspec`]: parse and validate `appspec.yml`.
//! - [`bundle`]: unpack revision archives safely and check what the appspec names.
//! - [`lifecycle`]: the lifecycle events and their order.
//! - [`config`]: deployment configurations and the minimum-healthy-hosts rules.
//! - [`identity`]: which IAM identity may report for a host.
//! - [`planner`]: target selection, ordering and Availability Zone striping.
//! - [`deployment`]: the deployment state machine, a pure function from events to effects.
//! - [`lambda`]: the AWS Lambda platform: traffic routing configs and the state machine
//!   that shifts an alias from one function version to another.
//! - [`wire`]: the messages between the control plane and the host agent.
#![forbid(unsafe_code)]

pub mod appspec;
pub mod bundle;
pub mod config;
pub mod deployment;
pub mod identity;
pub mod lambda;
pub mod lifecycle;
pub mod planner;
pub mod wire;
