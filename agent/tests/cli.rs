//! The agent's command line: --version and validate-config.

use std::process::Command;

fn agent(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_gantry-agent"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn version_and_validate_config() {
    let (code, stdout, _) = agent(&["--version"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("gantry-agent "), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yml");
    std::fs::write(
        &good,
        "identity:\n  on_premises_name: web-1\nregion: us-east-1\nqueue_prefix: gantry-cmd-\nreports_queue: gantry-reports\n",
    )
    .unwrap();
    let (code, stdout, stderr) = agent(&["--config", good.to_str().unwrap(), "validate-config"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("valid"), "{stdout}");

    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "identity:\n  on_premises_name: web-1\nregion: us-east-1\nqueue_prefix: gantry-cmd-\nreports_queue: gantry-reports\nmax_revisions: 0\n",
    )
    .unwrap();
    let (code, _, stderr) = agent(&["validate-config", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("max_revisions: must be at least 1"),
        "{stderr}"
    );

    let (code, _, stderr) = agent(&["--config", "/nonexistent/agent.yml"]);
    assert_eq!(code, 1, "a bad config stops the agent at start");
    assert!(stderr.contains("/nonexistent/agent.yml"), "{stderr}");
}

#[test]
fn validate_config_never_prints_proxy_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.yml");
    std::fs::write(
        &config,
        "identity:\n  on_premises_name: web-1\nregion: us-east-1\nqueue_prefix: gantry-cmd-\nreports_queue: gantry-reports\nproxy:\n  url: alice:s3cret@proxy.internal:3128\n",
    )
    .unwrap();
    let (code, stdout, stderr) = agent(&["--config", config.to_str().unwrap(), "validate-config"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("proxy.url"), "{stderr}");
    assert!(stderr.contains("***@proxy.internal:3128"), "{stderr}");
    assert!(!format!("{stdout}{stderr}").contains("s3cret"), "{stderr}");
}
