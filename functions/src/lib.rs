//! Gantry's AWS adapters (DynamoDB, SQS, SNS, EC2/Auto Scaling/ELB) and its Lambda
//! handlers: push, create-deployment, batch-advance, rollback, lifecycle and api.
//!
//! Built so far: [`store`], the DynamoDB adapter for deployments and group locks, where
//! every state transition is a conditional write. The handlers arrive with the
//! control-plane issue; this crate ships no binary yet.

pub mod store;
