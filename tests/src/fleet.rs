//! A whole Gantry on one machine, for end-to-end tests: a moto server, gantry-local, and
//! real `gantry-agent` processes playing on-premises hosts, driven by the real `gantry`
//! CLI. Everything started is stopped by pid when the fleet is dropped.

use crate::local::GantryLocal;
use crate::moto::{IamUser, Moto};
use crate::wait_until;
use anyhow::{Context, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The workspace's binaries, built by `cargo test --workspace` (or `make test`) before any
/// test runs. They sit next to the test executable's `deps/` directory.
pub struct Binaries {
    pub agent: PathBuf,
    pub cli: PathBuf,
    pub local: PathBuf,
}

impl Binaries {
    pub fn find() -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating the test executable")?;
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .context("the test executable is not in <target>/<profile>/deps")?;
        let binary = |name: &str| {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                bail!(
                    "{} is missing: build the workspace's binaries first (`cargo test --workspace` and `make test` do)",
                    path.display()
                )
            }
        };
        Ok(Self {
            agent: binary("gantry-agent")?,
            cli: binary("gantry")?,
            local: binary("gantry-local")?,
        })
    }
}

/// One host: an agent process with its own root_dir, install_root and log_dir.
pub struct Host {
    pub name: String,
    pub dir: PathBuf,
    child: Option<Child>,
    /// The IAM user its agent signs as.
    pub user: IamUser,
}

impl Host {
    /// Where appspec destinations land on this host (`install_root`).
    pub fn install_root(&self) -> PathBuf {
        self.dir.join("fs")
    }

    /// Where this host's hooks record the pids of anything they leave running
    /// (`E2E_RUN_DIR` in their environment); the fleet kills those pids when dropped.
    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: the host's agent dies mid-whatever, as on a crash or power loss.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::process::stop(&mut child, Duration::from_secs(10));
        }
        // Processes the hooks left behind, by the pids they wrote.
        crate::process::kill_recorded_pids(&self.run_dir());
    }
}

pub struct Fleet {
    pub binaries: Binaries,
    pub moto: Moto,
    pub local: GantryLocal,
    pub hosts: Vec<Host>,
    pub work: tempfile::TempDir,
    /// YAML appended to each agent's configuration from then on (e.g. a `github:` section).
    pub agent_config_extra: String,
}

impl Fleet {
    /// Starts moto and gantry-local (with `local_args`, e.g. a short tick); no hosts yet.
    pub fn start(local_args: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_env(local_args, &[])
    }

    /// [`Self::start`], gantry-local with `env` added to its environment.
    pub fn start_with_env(local_args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let binaries = Binaries::find()?;
        let moto = Moto::start()?;
        let local = GantryLocal::start_with_env(&binaries.local, &moto, local_args, env)?;
        Ok(Self {
            binaries,
            moto,
            local,
            hosts: Vec::new(),
            work: tempfile::tempdir().context("creating the fleet's directory")?,
            agent_config_extra: String::new(),
        })
    }

    /// The usual stage: `hosts` (each tagged role=web, with a real agent), the
    /// application `shop` and its group `web` of the role=web hosts, with `config`.
    pub fn shop(hosts: &[&str], config: &str) -> Self {
        let mut fleet = Self::start(&["--tick-ms", "200"]).expect("moto and gantry-local start");
        for host in hosts {
            fleet
                .add_host(host, &["role=web"])
                .expect("the host's agent starts");
        }
        fleet.gantry_ok(&["app", "create", "shop"]);
        fleet.gantry_ok(&[
            "group",
            "create",
            "web",
            "--app",
            "shop",
            "--on-prem-tag",
            "role=web",
            "--config",
            config,
        ]);
        fleet
    }

    /// Runs the `gantry` CLI against this fleet and returns its output, whatever the status.
    pub fn gantry(&self, args: &[&str]) -> Output {
        self.gantry_command(args)
            .output()
            .expect("the gantry CLI runs")
    }

    /// Runs the `gantry` CLI and requires it to succeed; returns its stdout.
    pub fn gantry_ok(&self, args: &[&str]) -> String {
        let output = self.gantry(args);
        assert!(
            output.status.success(),
            "gantry {} failed ({}):\n{}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("the CLI prints UTF-8")
    }

    /// `gantry --output json ARGS`, parsed.
    pub fn gantry_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let stdout = self.gantry_ok(&all);
        serde_json::from_str(&stdout).unwrap_or_else(|error| {
            panic!(
                "gantry {} printed no JSON ({error}):\n{stdout}",
                args.join(" ")
            )
        })
    }

    pub fn gantry_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binaries.cli);
        command
            .args(args)
            .envs(self.moto.sdk_env())
            .env("GANTRY_ENDPOINT_URL", self.local.endpoint())
            .stdin(Stdio::null());
        command
    }

    /// `aws lambda invoke` with the stock AWS CLI against this fleet's gantry-local.
    pub fn aws_lambda_invoke(&self, function: &str, payload: &Value) -> Value {
        let out = self.work.path().join("aws-invoke-response.json");
        crate::local::aws_lambda_invoke(&self.moto, self.local.endpoint(), function, payload, &out)
    }

    /// `aws deploy ARGS` with the stock AWS CLI, CodeDeploy's own protocol against this
    /// fleet's gantry-local (every other service, S3 for `push`, goes to moto); its
    /// output, whatever the status.
    pub fn aws_deploy(&self, args: &[&str]) -> Output {
        Command::new(crate::workspace_root().join(".venv/bin/aws"))
            .arg("deploy")
            .args(args)
            .args(["--endpoint-url", self.local.endpoint()])
            .envs(self.moto.sdk_env())
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .stdin(Stdio::null())
            .output()
            .expect("the stock AWS CLI runs")
    }

    /// `aws deploy ARGS`, required to succeed; its JSON output (null when it prints none).
    pub fn aws_deploy_ok(&self, args: &[&str]) -> Value {
        let output = self.aws_deploy(args);
        assert!(
            output.status.success(),
            "aws deploy {} failed ({}):\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        if output.stdout.iter().all(u8::is_ascii_whitespace) {
            return Value::Null;
        }
        serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
            panic!(
                "aws deploy {} printed no JSON ({error}): {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }

    /// Registers an on-premises instance with `tags` as an IAM user of its own (named
    /// `host-<name>`), without starting an agent; returns the user, whose keys the
    /// host's agent signs with.
    pub fn register_host(&self, name: &str, tags: &[&str]) -> anyhow::Result<IamUser> {
        let user = self.moto.create_iam_user(&format!("host-{name}"))?;
        let mut register = vec!["instance", "register", name, "--iam-user-arn", &user.arn];
        for tag in tags {
            register.extend(["--tag", tag]);
        }
        self.gantry_ok(&register);
        Ok(user)
    }

    /// Registers an on-premises instance with `tags` and starts its agent. Every host
    /// gets `E2E_HOST` (its name) and `E2E_RUN_DIR` in its hooks' environment.
    pub fn add_host(&mut self, name: &str, tags: &[&str]) -> anyhow::Result<&Host> {
        let user = self.register_host(name, tags)?;
        let dir = self.work.path().join("hosts").join(name);
        for sub in ["root", "fs", "logs", "run"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let config = dir.join("agent.yml");
        std::fs::write(
            &config,
            format!(
                "identity:\n  on_premises_name: {name}\nregion: us-east-1\n\
                 queue_prefix: gantry-commands-\nreports_queue: gantry-reports\n\
                 root_dir: {root}\nlog_dir: {logs}\ninstall_root: {fs}\npoll_wait_seconds: 20\n{extra}",
                root = dir.join("root").display(),
                logs = dir.join("logs").display(),
                fs = dir.join("fs").display(),
                extra = self.agent_config_extra,
            ),
        )?;
        let child = Command::new(&self.binaries.agent)
            .arg("--config")
            .arg(&config)
            .envs(self.moto.sdk_env_as(&user))
            .env("E2E_HOST", name)
            .env("E2E_RUN_DIR", dir.join("run"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("agent.stderr"))?)
            .spawn()
            .with_context(|| format!("starting {}", self.binaries.agent.display()))?;
        self.hosts.push(Host {
            name: name.to_owned(),
            dir,
            child: Some(child),
            user,
        });
        Ok(self.hosts.last().expect("just pushed"))
    }

    /// `gantry push` of a [`revision`] directory (`hooks` as there) to
    /// `s3://gantry-revisions/<app>/<version>.tgz`.
    pub fn push(&self, app: &str, version: &str, hooks: &[(&str, &str)], timeout_seconds: u32) {
        let dir = self.work.path().join("revisions").join(app).join(version);
        revision(&dir, version, hooks, timeout_seconds).expect("writing the revision");
        let s3 = format!("s3://gantry-revisions/{app}/{version}.tgz");
        self.gantry_ok(&["push", dir.to_str().unwrap(), "--app", app, "--s3", &s3]);
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|host| host.name == name)
            .unwrap_or_else(|| panic!("no host {name}"))
    }

    pub fn host_mut(&mut self, name: &str) -> &mut Host {
        self.hosts
            .iter_mut()
            .find(|host| host.name == name)
            .unwrap_or_else(|| panic!("no host {name}"))
    }

    /// GetDeployment's `deploymentInfo`, through the CLI.
    pub fn deployment(&self, deployment_id: &str) -> Value {
        let output = self
            .gantry_command(&["--output", "json", "status", deployment_id])
            .output()
            .expect("the gantry CLI runs");
        // `status` exits non-zero for Failed and Stopped; its JSON is still the answer.
        let info: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
            panic!(
                "gantry status {deployment_id} printed no JSON ({error}): {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
        info["deploymentInfo"].clone()
    }

    /// Waits until the deployment reaches a terminal status and returns its info.
    pub fn wait_for_end(&self, deployment_id: &str, timeout: Duration) -> Value {
        let mut info = Value::Null;
        let ended = wait_until(timeout, || {
            info = self.deployment(deployment_id);
            matches!(
                info["status"].as_str(),
                Some("Succeeded" | "Failed" | "Stopped")
            )
        });
        assert!(
            ended,
            "deployment {deployment_id} did not end within {timeout:?}: {info:#}"
        );
        info
    }

    /// The deployment's instance targets (BatchGetDeploymentTargets' `instanceTarget`s).
    pub fn targets(&self, deployment_id: &str) -> Vec<Value> {
        let targets = self.gantry_json(&["logs", deployment_id]);
        targets.as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for host in &mut self.hosts {
            host.stop();
        }
    }
}

/// A revision directory for `gantry push`: `site/version.txt` says `version` and is
/// installed to `/srv/app`; `hooks` maps lifecycle event names to shell script bodies,
/// each with a timeout of `timeout_seconds`.
pub fn revision(
    dir: &Path,
    version: &str,
    hooks: &[(&str, &str)],
    timeout_seconds: u32,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("site"))?;
    std::fs::create_dir_all(dir.join("scripts"))?;
    std::fs::write(dir.join("site/version.txt"), format!("{version}\n"))?;
    let mut appspec = String::from(
        "version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: /srv/app\n",
    );
    if !hooks.is_empty() {
        appspec.push_str("hooks:\n");
    }
    for (event, body) in hooks {
        let script = format!("scripts/{event}.sh");
        std::fs::write(dir.join(&script), format!("#!/bin/sh\nset -e\n{body}\n"))?;
        appspec.push_str(&format!(
            "  {event}:\n    - location: {script}\n      timeout: {timeout_seconds}\n"
        ));
    }
    std::fs::write(dir.join("appspec.yml"), appspec)?;
    Ok(())
}

/// The version a host serves: `/srv/app/version.txt` under its install_root.
pub fn installed_version(host: &Host) -> Option<String> {
    std::fs::read_to_string(host.install_root().join("srv/app/version.txt"))
        .ok()
        .map(|text| text.trim().to_owned())
}
