//! CodeDeploy's API for the EC2/on-premises platform, as Gantry serves it: the shapes
//! requests and responses carry ([`model`], and each operation's output by area:
//! [`application`], [`group`], [`config`], [`instance`], [`deployment`], [`target`],
//! [`revision`], [`tags`]; [`paging`] for the List operations) and the exceptions errors
//! are named by ([`error`]). The control plane renders these types and the `gantry` CLI
//! reads them, so the two cannot drift apart; the AWS CLI reads the same JSON.
//!
//! No AWS SDK and no I/O: serde, and gantry-core's domain types.

pub mod application;
pub mod config;
pub mod deployment;
pub mod error;
pub mod group;
pub mod instance;
pub mod lambda;
pub mod model;
pub mod paging;
pub mod protocol;
pub mod revision;
pub mod tags;
pub mod target;

pub use error::{ApiError, Exception, FunctionError};

#[cfg(test)]
mod testing {
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// `given` read as a `T`, after checking that it writes back as `given`: nothing is
    /// lost or renamed on the way.
    pub fn reads_and_writes_back<T: Serialize + DeserializeOwned>(given: serde_json::Value) -> T {
        let read: T = serde_json::from_value(given.clone()).expect("reads");
        assert_eq!(serde_json::to_value(&read).expect("writes"), given);
        read
    }
}
