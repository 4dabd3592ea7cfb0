//! gantry-local hosts every Gantry handler in one process against the endpoint in
//! `AWS_ENDPOINT_URL`, and plays the event sources (reports queue, schedule tick,
//! lifecycle and alarm notifications).
//!
//! It arrives with the control-plane issue; until then this crate ships no binary.
