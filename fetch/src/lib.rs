//! The HTTP downloads Gantry makes itself, for the agent that installs a revision and the
//! control plane that checks it first: one HTTP stack with the same limits (size, silence,
//! deadline) and proxy rules as the AWS SDK's, GitHub's tarballs and commit ids, and the
//! secrets that authorize them.

pub mod github;
pub mod net;
pub mod secret;

pub use net::redacted;
