//! Gantry's AWS adapters (DynamoDB, SQS, SNS, EC2/Auto Scaling/ELB) and its Lambda
//! handlers: push, create-deployment, batch-advance, rollback, lifecycle and api.
//!
//! The handlers arrive with the control-plane issue; this crate holds no handler yet, and
//! ships no binary, so nothing can be mistaken for a working control plane.
