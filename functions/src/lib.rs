//! Gantry's control plane: AWS adapters (DynamoDB, SQS, SNS, S3, EC2/Auto Scaling) and
//! the Lambda handlers push, create-deployment, batch-advance, rollback and api.
//!
//! [`api::invoke`] is the one entry point: a function name and its payload in, CodeDeploy-
//! shaped JSON or a CodeDeploy-named error out. The Lambda binaries and gantry-local
//! both call it, so there is one code path for AWS and for a laptop.

pub mod adapters;
pub mod advance;
pub mod api;
pub mod control;
pub mod error;
pub mod lambda;
pub mod lifecycle;
pub mod model;
pub mod notify;
pub mod store;
