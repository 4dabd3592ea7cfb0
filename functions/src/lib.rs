//! Gantry's control plane: the Lambda handlers and the AWS adapters they use.
//!
//! - [`handlers`]: one module per Lambda function (push, create-deployment,
//!   batch-advance, rollback, autoscaling, api) and [`handlers::invoke`], the one entry
//!   point the Lambda binaries and gantry-local share.
//! - [`deploy`]: making deployments (CreateDeployment's planning, rollbacks).
//! - [`engine`]: the deployment engine. Every change to a deployment is an
//!   [`engine::step`]: apply and persist ([`engine::transition`], the optimistic write
//!   loop), then carry out the effects, in one place.
//! - [`traffic_steps`]: BlockTraffic and AllowTraffic between a host's commands, through
//!   [`traffic`] (ELBv2 target groups).
//! - [`store`] (DynamoDB), [`adapters`] (SQS, SNS, S3, EC2, Auto Scaling), [`notify`]
//!   (trigger messages), [`model`] (CodeDeploy's shapes), [`control`] (settings and
//!   clients).
//!
//! - [`lambda_deployments`]: the Lambda compute platform's engine (an alias shifted
//!   between two versions, with hooks), beside the EC2 one.
//!
//! - [`group_hooks`]: a deployment group's Auto Scaling lifecycle hooks, shared by the API
//!   and blue/green.
//!
//! - [`ports`]: the traits the engine and CreateDeployment reach their records, queues
//!   and topics through (DynamoDB, SQS and SNS in Lambda; in memory in unit tests, so
//!   that whole deployments are tested in milliseconds without moto).
//!
//! The module graph runs one way, each layer using only those below it:
//! lambda → handlers → engine, lambda_deployments → deploy (creating deployments and
//! rollbacks) → blue_green, traffic_steps, group_hooks, notify → ports → control
//! (settings and clients) → adapters, green_fleet, traffic → store → model → error. A
//! decision that needs the engine (a traffic check's outcome, a copy found ready) is
//! returned to the caller above, which hands it to the engine. `make lint` runs
//! scripts/module_cycles.py, which fails on any use that closes a cycle among a crate's
//! top-level modules.

pub mod adapters;
pub mod blue_green;
pub mod control;
pub mod deploy;
pub mod engine;
pub mod error;
pub mod green_fleet;
pub mod group_hooks;
pub mod handlers;
pub mod lambda;
pub mod lambda_deployments;
pub mod model;
pub mod notify;
pub mod ports;
pub mod store;
pub mod traffic;
pub mod traffic_steps;
