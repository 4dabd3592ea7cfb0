//! `gantry deploy`: create a deployment and follow it live; `status` and `logs` share
//! the rendering.

use crate::Output;
use crate::client::Gantry;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct DeployArgs {
    #[arg(long)]
    app: String,
    #[arg(long)]
    group: String,
    /// `latest` (the newest pushed revision) or s3://bucket/key.
    #[arg(long, default_value = "latest")]
    revision: String,
    /// zip, tar or tgz, for an s3:// revision whose key does not say.
    #[arg(long)]
    bundle_type: Option<String>,
    /// Deployment configuration (default: the group's).
    #[arg(long)]
    config: Option<String>,
    #[arg(long)]
    description: Option<String>,
    /// What to do with a file that is already where the revision installs one, and was
    /// not installed by this group's previous deployment (default DISALLOW).
    #[arg(long, value_parser = ["DISALLOW", "OVERWRITE", "RETAIN"])]
    file_exists_behavior: Option<String>,
    /// Print the deployment id and return at once.
    #[arg(long)]
    no_wait: bool,
}

fn bundle_type_of(key: &str) -> Option<&'static str> {
    if key.ends_with(".zip") {
        Some("zip")
    } else if key.ends_with(".tgz") || key.ends_with(".tar.gz") {
        Some("tgz")
    } else if key.ends_with(".tar") {
        Some("tar")
    } else {
        None
    }
}

async fn revision(gantry: &Gantry, args: &DeployArgs) -> anyhow::Result<Value> {
    if args.revision == "latest" {
        let listed = gantry
            .api(
                "ListApplicationRevisions",
                json!({"applicationName": args.app}),
            )
            .await?;
        return listed["revisions"]
            .get(0)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("application {} has no pushed revision; run `gantry push` first, or pass --revision s3://bucket/key", args.app));
    }
    let (bucket, key) = args
        .revision
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--revision: expected `latest` or s3://bucket/key, found {:?}",
                args.revision
            )
        })?;
    let bundle_type = args
        .bundle_type
        .as_deref()
        .or_else(|| bundle_type_of(key))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--bundle-type: the key {key:?} does not say zip, tar or tgz; pass --bundle-type"
            )
        })?;
    Ok(
        json!({"revisionType": "S3", "s3Location": {"bucket": bucket, "key": key, "bundleType": bundle_type}}),
    )
}

/// Every target of a deployment, as BatchGetDeploymentTargets' `instanceTarget`s.
pub async fn targets(gantry: &Gantry, deployment_id: &str) -> anyhow::Result<Vec<Value>> {
    let listed = gantry
        .api(
            "ListDeploymentTargets",
            json!({"deploymentId": deployment_id}),
        )
        .await?;
    let ids = listed["targetIds"].clone();
    if ids.as_array().is_none_or(Vec::is_empty) {
        return Ok(Vec::new());
    }
    let got = gantry
        .api(
            "BatchGetDeploymentTargets",
            json!({"deploymentId": deployment_id, "targetIds": ids}),
        )
        .await?;
    Ok(got["deploymentTargets"]
        .as_array()
        .map(|targets| {
            targets
                .iter()
                .map(|t| t["instanceTarget"].clone())
                .collect()
        })
        .unwrap_or_default())
}

pub fn exit_code(info: &Value) -> ExitCode {
    match info["status"].as_str() {
        Some("Succeeded") => ExitCode::SUCCESS,
        Some("Failed") | Some("Stopped") => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    }
}

/// The event a host is on: the one in progress, else the last that ended.
fn current_event(target: &Value) -> (String, String) {
    let events = target["lifecycleEvents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let running = events.iter().find(|e| e["status"] == "InProgress");
    let last = events.iter().rev().find(|e| e["status"] != "Pending");
    match running.or(last) {
        Some(event) => (
            event["lifecycleEventName"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            event["status"].as_str().unwrap_or("").to_owned(),
        ),
        None => ("waiting for the host's agent".into(), String::new()),
    }
}

fn failure_text(target: &Value) -> Option<String> {
    let events = target["lifecycleEvents"].as_array()?;
    let failed = events.iter().find(|e| e["status"] == "Failed")?;
    let diagnostics = &failed["diagnostics"];
    let mut text = format!(
        "{} failed in {}: {}",
        target["targetId"].as_str().unwrap_or("?"),
        failed["lifecycleEventName"].as_str().unwrap_or("?"),
        diagnostics["message"].as_str().unwrap_or("no message")
    );
    if let Some(script) = diagnostics["scriptName"].as_str().filter(|s| !s.is_empty()) {
        text.push_str(&format!(" [{script}]"));
    }
    let tail: Vec<&str> = diagnostics["logTail"]
        .as_str()
        .unwrap_or("")
        .lines()
        .collect();
    for line in &tail[tail.len().saturating_sub(5)..] {
        text.push_str(&format!("\n    | {line}"));
    }
    Some(text)
}

pub fn summary(info: &Value, targets: &[Value]) -> String {
    let overview = &info["deploymentOverview"];
    let mut text = format!(
        "{} {} ({} to {}/{}, {})\n  {} succeeded, {} failed, {} skipped, {} in progress, {} pending",
        info["deploymentId"].as_str().unwrap_or("?"),
        info["status"].as_str().unwrap_or("?"),
        info["revision"]["s3Location"]["key"]
            .as_str()
            .unwrap_or("revision"),
        info["applicationName"].as_str().unwrap_or("?"),
        info["deploymentGroupName"].as_str().unwrap_or("?"),
        info["deploymentConfigName"].as_str().unwrap_or("?"),
        overview["Succeeded"],
        overview["Failed"],
        overview["Skipped"],
        overview["InProgress"],
        overview["Pending"],
    );
    if let Some(message) = info["errorInformation"]["message"].as_str() {
        text.push_str(&format!("\n  {message}"));
    }
    if let Some(rollback) = info["rollbackInfo"]["rollbackDeploymentId"].as_str() {
        text.push_str(&format!("\n  rolled back by {rollback}"));
    }
    if let Some(message) = info["rollbackInfo"]["rollbackMessage"].as_str() {
        text.push_str(&format!("\n  {message}"));
    }
    for target in targets {
        let (event, status) = current_event(target);
        text.push_str(&format!(
            "\n  {:<20} {:<10} {event} {status}",
            target["targetId"].as_str().unwrap_or("?"),
            target["status"].as_str().unwrap_or("?"),
        ));
    }
    text
}

pub fn logs(targets: &[Value], instance: Option<&str>, event: Option<&str>) -> String {
    let mut text = String::new();
    for target in targets {
        let id = target["targetId"].as_str().unwrap_or("?");
        if instance.is_some_and(|wanted| wanted != id) {
            continue;
        }
        for record in target["lifecycleEvents"].as_array().into_iter().flatten() {
            let name = record["lifecycleEventName"].as_str().unwrap_or("?");
            if event.is_some_and(|wanted| wanted != name) || record["status"] == "Pending" {
                continue;
            }
            let diagnostics = &record["diagnostics"];
            text.push_str(&format!(
                "{id} {name} {} {}\n",
                record["status"].as_str().unwrap_or("?"),
                diagnostics["errorCode"].as_str().unwrap_or("")
            ));
            if let Some(message) = diagnostics["message"].as_str().filter(|m| !m.is_empty()) {
                text.push_str(&format!("  {message}\n"));
            }
            for line in diagnostics["logTail"].as_str().unwrap_or("").lines() {
                text.push_str(&format!("  | {line}\n"));
            }
        }
    }
    text
}

pub async fn run(gantry: &Gantry, args: DeployArgs, output: Output) -> anyhow::Result<ExitCode> {
    let mut input = json!({
        "applicationName": args.app,
        "deploymentGroupName": args.group,
        "revision": revision(gantry, &args).await?,
    });
    if let Some(config) = &args.config {
        input["deploymentConfigName"] = json!(config);
    }
    if let Some(description) = &args.description {
        input["description"] = json!(description);
    }
    if let Some(behavior) = &args.file_exists_behavior {
        input["fileExistsBehavior"] = json!(behavior);
    }
    let created = gantry.invoke("create-deployment", &input).await?;
    let id = created["deploymentId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if args.no_wait {
        crate::show(output, &created, |_| id.clone());
        return Ok(ExitCode::SUCCESS);
    }
    let interactive = output == Output::Text && std::io::stdout().is_terminal();
    let (mut info, code) = follow(gantry, &id, output, interactive).await?;
    if rolls_back(&info) {
        info = wait_for_rollback(gantry, &id, info).await?;
    }
    if let Some(rollback) = info["rollbackInfo"]["rollbackDeploymentId"].as_str() {
        if output == Output::Text {
            println!("\nautomatic rollback {rollback}: redeploying the last successful revision");
        }
        let (rolled_back, _) = follow(gantry, rollback, output, interactive).await?;
        if output == Output::Json {
            crate::show(
                output,
                &json!({"deploymentInfo": info, "rollback": rolled_back}),
                |_| String::new(),
            );
        }
        return Ok(code);
    }
    if output == Output::Json {
        crate::show(output, &json!({"deploymentInfo": info}), |_| String::new());
    }
    Ok(code)
}

/// Whether the deployment's end starts an automatic rollback.
fn rolls_back(info: &Value) -> bool {
    let config = &info["autoRollbackConfiguration"];
    let wanted = match info["status"].as_str() {
        Some("Failed") => "DEPLOYMENT_FAILURE",
        Some("Stopped") => "DEPLOYMENT_STOP_ON_REQUEST",
        _ => return false,
    };
    config["enabled"] == true
        && config["events"]
            .as_array()
            .is_some_and(|events| events.iter().any(|event| event == wanted))
}

/// The rollback starts just after the deployment ends; wait (briefly) until it is linked.
async fn wait_for_rollback(gantry: &Gantry, id: &str, mut info: Value) -> anyhow::Result<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while info["rollbackInfo"].is_null() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        info = gantry
            .api("GetDeployment", json!({"deploymentId": id}))
            .await?["deploymentInfo"]
            .clone();
    }
    Ok(info)
}

/// Batches as the CLI sees them: a poll in which more hosts have been dispatched than
/// before starts a new batch. The API does not expose batches (nor does CodeDeploy's), and
/// their size depends on health as the deployment goes, so the total is an estimate: the
/// batches so far plus the pending hosts in batches the size of the last.
#[derive(Debug, Default)]
struct Batches {
    started: usize,
    dispatched: usize,
    last_size: usize,
}

impl Batches {
    /// Takes one poll's targets; returns true when a new batch started.
    fn observe(&mut self, targets: &[Value]) -> bool {
        let dispatched = targets
            .iter()
            .filter(|t| {
                matches!(
                    t["status"].as_str(),
                    Some("InProgress" | "Succeeded" | "Failed")
                )
            })
            .count();
        if dispatched <= self.dispatched {
            return false;
        }
        self.started += 1;
        self.last_size = dispatched - self.dispatched;
        self.dispatched = dispatched;
        true
    }

    fn label(&self, targets: &[Value]) -> String {
        if self.started == 0 {
            return String::new();
        }
        let pending = targets.iter().filter(|t| t["status"] == "Pending").count();
        let total = self.started + pending.div_ceil(self.last_size.max(1));
        format!("batch {} of {total}", self.started)
    }
}

/// Polls a deployment until it ends, showing each host's progress (bars on a terminal,
/// a line per change otherwise) and each failure as it happens.
async fn follow(
    gantry: &Gantry,
    id: &str,
    output: Output,
    interactive: bool,
) -> anyhow::Result<(Value, ExitCode)> {
    let multi = MultiProgress::with_draw_target(if interactive {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let overall = multi.add(ProgressBar::new(0));
    overall.set_style(
        ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {pos}/{len} hosts {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    overall.set_prefix(id.to_owned());
    let host_style =
        ProgressStyle::with_template("  {spinner} {prefix:<20} {msg}").expect("a valid template");
    let mut bars: BTreeMap<String, ProgressBar> = BTreeMap::new();
    let mut last_seen: BTreeMap<String, (String, String, String)> = BTreeMap::new();
    let mut reported_failures = std::collections::BTreeSet::new();
    let mut batches = Batches::default();
    let text = output == Output::Text;
    loop {
        let info = gantry
            .api("GetDeployment", json!({"deploymentId": id}))
            .await?["deploymentInfo"]
            .clone();
        let targets = targets(gantry, id).await?;
        overall.set_length(targets.len() as u64);
        let done = targets
            .iter()
            .filter(|t| {
                matches!(
                    t["status"].as_str(),
                    Some("Succeeded" | "Failed" | "Skipped")
                )
            })
            .count();
        overall.set_position(done as u64);
        let new_batch = batches.observe(&targets);
        let batch = batches.label(&targets);
        overall.set_message(format!("{} {batch}", info["status"].as_str().unwrap_or("")));
        if new_batch && text && !interactive {
            println!("{batch}");
        }
        for target in &targets {
            let host = target["targetId"].as_str().unwrap_or("?").to_owned();
            let (event, event_status) = current_event(target);
            let status = target["status"].as_str().unwrap_or("?").to_owned();
            let bar = bars.entry(host.clone()).or_insert_with(|| {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(host_style.clone());
                bar.set_prefix(host.clone());
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            });
            let line = format!("{status:<10} {event} {event_status}");
            bar.set_message(line.clone());
            let now = (status.clone(), event.clone(), event_status.clone());
            if last_seen.get(&host) != Some(&now) {
                if text && !interactive {
                    println!("{host}: {line}");
                }
                last_seen.insert(host.clone(), now);
            }
            if status == "Failed"
                && reported_failures.insert(host.clone())
                && text
                && let Some(failure) = failure_text(target)
            {
                multi.suspend(|| eprintln!("✗ {failure}"));
            }
        }
        if matches!(
            info["status"].as_str(),
            Some("Succeeded" | "Failed" | "Stopped")
        ) {
            for bar in bars.values() {
                bar.finish();
            }
            overall.finish();
            multi.clear().ok();
            if text {
                println!("{}", summary(&info, &targets));
            }
            let code = exit_code(&info);
            return Ok((info, code));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(statuses: &[&str]) -> Vec<Value> {
        statuses.iter().map(|s| json!({"status": s})).collect()
    }

    #[test]
    fn batches_count_polls_that_dispatch_hosts_and_estimate_the_rest() {
        let mut batches = Batches::default();
        let waiting = targets(&["Pending", "Pending", "Pending", "Pending"]);
        assert!(!batches.observe(&waiting));
        assert_eq!(batches.label(&waiting), "");

        let first = targets(&["InProgress", "InProgress", "Pending", "Pending"]);
        assert!(batches.observe(&first));
        assert_eq!(batches.label(&first), "batch 1 of 2");
        // The same batch, further along: not a new one.
        let first_done = targets(&["Succeeded", "InProgress", "Pending", "Pending"]);
        assert!(!batches.observe(&first_done));

        let second = targets(&["Succeeded", "Succeeded", "InProgress", "InProgress"]);
        assert!(batches.observe(&second));
        assert_eq!(batches.label(&second), "batch 2 of 2");
    }

    #[test]
    fn skipped_hosts_are_not_a_batch() {
        let mut batches = Batches::default();
        assert!(batches.observe(&targets(&["Failed", "Pending", "Pending"])));
        let stopped = targets(&["Failed", "Skipped", "Skipped"]);
        assert!(!batches.observe(&stopped));
        assert_eq!(batches.label(&stopped), "batch 1 of 1");
    }
}
