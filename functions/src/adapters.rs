//! Adapters, one module per AWS service: SQS (host command queues), SNS (trigger
//! notifications), S3 (revision bundles), GitHub (revisions by commit), the fleet (on-premises instances, EC2 tags,
//! Auto Scaling groups), IAM (reporting identities), Auto Scaling lifecycle hooks and
//! CloudWatch alarms, Lambda aliases and hook functions, and CodePipeline's jobs.
//! Each maps SDK errors to [`ApiError`]s that say what failed.

use crate::error::ApiError;
use aws_sdk_dynamodb::error::DisplayErrorContext;

mod alarms;
mod aliases;
mod bundles;
mod fleet;
mod github;
mod identities;
mod lifecycle_hooks;
mod notifier;
mod pipeline;
mod queues;

pub use alarms::Alarms;
pub use aliases::{AliasState, Aliases};
pub use bundles::{Bundles, register};
pub use fleet::{Fleet, Host};
pub use github::{GitHubRevisions, GitHubSettings};
pub use identities::Identities;
pub use lifecycle_hooks::{HookKind, LAUNCHING, LifecycleHooks, MANAGED_TAG, TERMINATING};
pub use notifier::{Notifier, PublishError};
pub use pipeline::{
    ArtifactCredentials, Copied, CopyError, FailureKind, JobAnswer, JobResults, PipelineJobs,
};
pub use queues::{
    COMMAND_MAX_RECEIVES, COMMAND_RETENTION_SECONDS, CommandQueues, INSTANCE_ARN_TAG, SENDER_ID_TAG,
};

fn aws_failure(service: &str, error: impl std::error::Error) -> ApiError {
    ApiError::internal(format!("{service}: {}", DisplayErrorContext(error)))
}
