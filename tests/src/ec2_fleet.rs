//! Simulated EC2 hosts for end-to-end tests: tests/fleet_runner.py runs a real
//! `gantry-agent` for every running instance of a moto server, with the instance's EC2
//! identity (IMDSv2 at the instance's own loopback address; the instance profile's role,
//! its session named after the instance), kept running as its systemd unit keeps it
//! (tests/agent_service.sh). Dropping the fleet stops the runner, which stops the agents,
//! then kills by pid whatever outlived it: an agent, or a process a hook left running.

use crate::moto::Moto;
use crate::{process, wait_until};
use anyhow::Context;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Each instance's agent.yml; the runner fills in the names in braces.
const AGENT_CONFIG: &str = "identity:\n  ec2:\n    metadata_endpoint: \"{metadata_endpoint}\"\n\
     region: {region}\nqueue_prefix: gantry-commands-\nreports_queue: gantry-reports\n\
     root_dir: {dir}/root\nlog_dir: {dir}/logs\ninstall_root: {dir}/fs\n\
     poll_wait_seconds: 20\nstop_grace_seconds: 5\n";

/// How long the runner gives each agent between SIGTERM and SIGKILL.
const AGENT_GRACE: Duration = Duration::from_secs(5);

/// How long the runner may take to stop, its agents one after another.
const RUNNER_GRACE: Duration = Duration::from_secs(30);

pub struct Ec2Fleet {
    runner: Child,
    dir: PathBuf,
}

/// An instance the runner runs an agent for, as `<dir>/fleet.json` lists it.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    /// Where its application listens: 127.B.C.D, from its private address A.B.C.D.
    pub address: String,
    /// agent.yml, agent.log, and the agent's root/, logs/ and fs/ (its install_root).
    pub dir: PathBuf,
}

impl Instance {
    /// Where appspec destinations land on this instance (`install_root`).
    pub fn install_root(&self) -> PathBuf {
        self.dir.join("fs")
    }

    /// Where the agent's pid is recorded, and where hooks record the pids of what they
    /// leave running (`E2E_RUN_DIR` in their environment).
    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }
}

impl Ec2Fleet {
    /// Starts the runner against `moto` with `agent` (the gantry-agent executable),
    /// each instance's directory under `dir`. `env` is added to each agent's environment,
    /// and so its hooks'; in values, `{dir}` (the instance's directory), `{address}` and
    /// `{instance_id}` are filled in, and other braces are not allowed.
    pub fn start(
        moto: &Moto,
        agent: &Path,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let template = dir.join("agent.yml.in");
        std::fs::write(&template, AGENT_CONFIG)?;
        let root = crate::workspace_root();
        let mut command = vec![
            quoted(&root.join("tests/agent_service.sh").to_string_lossy()),
            "{dir}/run".to_owned(),
            "env".to_owned(),
            "E2E_RUN_DIR={dir}/run".to_owned(),
        ];
        command.extend(
            env.iter()
                .map(|(name, value)| quoted(&format!("{name}={value}"))),
        );
        command.extend([
            quoted(&agent.to_string_lossy()),
            "--config".to_owned(),
            "{dir}/agent.yml".to_owned(),
        ]);
        let log = std::fs::File::create(dir.join("fleet_runner.log"))?;
        let runner = Command::new(root.join(".venv/bin/python"))
            .arg(root.join("tests/fleet_runner.py"))
            .args(["--endpoint", moto.endpoint()])
            .arg("--dir")
            .arg(dir)
            .args(["--command", &command.join(" ")])
            .arg("--config-template")
            .arg(&template)
            .args(["--grace", &AGENT_GRACE.as_secs().to_string()])
            .envs(moto.sdk_env())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting tests/fleet_runner.py")?;
        Ok(Self {
            runner,
            dir: dir.to_owned(),
        })
    }

    /// The instances the runner runs agents for now, by id.
    pub fn instances(&self) -> BTreeMap<String, Instance> {
        let listed: Value = std::fs::read(self.dir.join("fleet.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(Value::Null);
        let Some(listed) = listed.as_object() else {
            return BTreeMap::new();
        };
        listed
            .iter()
            .map(|(id, entry)| {
                let instance = Instance {
                    id: id.clone(),
                    address: entry["address"].as_str().unwrap_or_default().to_owned(),
                    dir: PathBuf::from(entry["dir"].as_str().unwrap_or_default()),
                };
                (id.clone(), instance)
            })
            .collect()
    }

    /// Waits until the runner runs an agent for each of `ids`; returns them in that order.
    pub fn wait_for(&self, ids: &[String], timeout: Duration) -> anyhow::Result<Vec<Instance>> {
        let mut running = BTreeMap::new();
        let all = wait_until(timeout, || {
            running = self.instances();
            ids.iter().all(|id| running.contains_key(id))
        });
        if !all {
            anyhow::bail!(
                "the fleet runner did not start agents for {ids:?} within {timeout:?}; it runs {:?}:\n{}",
                running.keys().collect::<Vec<_>>(),
                tail(&self.dir.join("fleet_runner.log"), 20)
            );
        }
        Ok(ids.iter().map(|id| running[id].clone()).collect())
    }
}

impl Drop for Ec2Fleet {
    fn drop(&mut self) {
        let instances = self.instances();
        process::stop(&mut self.runner, RUNNER_GRACE);
        // Whatever outlived the runner, by the pids recorded in each instance's run/.
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                process::kill_recorded_pids(&entry.path().join("run"));
            }
        }
        // The harness shows a failing test's output, so this lands next to the panic.
        if std::thread::panicking() {
            eprintln!(
                "--- the fleet runner's log ---\n{}",
                tail(&self.dir.join("fleet_runner.log"), 20)
            );
            for instance in instances.values() {
                eprintln!(
                    "--- {}'s agent log ---\n{}",
                    instance.id,
                    tail(&instance.dir.join("agent.log"), 40)
                );
            }
        }
    }
}

/// One word for the runner's `shlex.split`.
fn quoted(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The last `lines` lines of a log file.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let last: Vec<&str> = text.lines().rev().take(lines).collect();
    last.into_iter().rev().collect::<Vec<_>>().join("\n")
}
