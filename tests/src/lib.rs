//! Support for Gantry's end-to-end tests: a real moto server, and archives built byte by
//! byte (including the malicious ones no well-behaved tool would write).

pub mod archive;
pub mod browser;
pub mod console;
pub mod ec2_fleet;
pub mod fleet;
pub mod github;
pub mod http;
pub mod instance_profile;
pub mod lambda_stand;
pub mod lb_stack;
pub mod local;
pub mod moto;
pub mod process;
pub mod reports;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A loopback port free when asked (for a server the test starts).
pub fn free_port() -> anyhow::Result<u16> {
    use anyhow::Context;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The workspace root, where `.venv/` and `examples/` live. Read when the test runs
/// (cargo sets CARGO_MANIFEST_DIR to the tested crate, one level under the root): a test
/// binary built in another clone, sharing a target directory, still finds this clone.
pub fn workspace_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_owned()
}

/// Polls `condition` until it holds or `timeout` passes; tests wait on conditions, not sleeps.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}
