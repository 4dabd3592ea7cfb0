//! `gantry deploy`: create a deployment and follow it live; `status` and `logs` share
//! the rendering.

use crate::client::Gantry;
use crate::output::Output;
use gantry_api::deployment::CreateDeploymentOutput;
use gantry_api::deployment::DeploymentInfo;
use gantry_api::model::serialized_name;
use gantry_api::model::{BLUE_GREEN, ROLLBACK_ON_ALARM, ROLLBACK_ON_FAILURE, ROLLBACK_ON_REQUEST};
use gantry_api::revision::ListApplicationRevisionsOutput;
use gantry_api::target::{
    BatchGetDeploymentTargetsOutput, InstanceTarget, ListDeploymentTargetsOutput,
};
use gantry_core::deployment::{DeploymentStatus, Stage, TargetStatus};
use gantry_core::wire::{EventStatus, RevisionLocation};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

pub mod lambda;

#[derive(clap::Args)]
pub struct DeployArgs {
    #[arg(long)]
    app: String,
    #[arg(long)]
    group: String,
    /// `latest` (the newest pushed revision), s3://bucket/key (a bundle, or for a
    /// Lambda application an AppSpec file: .yml, .yaml or .json), or
    /// github:OWNER/REPO@COMMIT (a commit, checked by Gantry before any host gets it).
    #[arg(long, default_value = "latest")]
    revision: String,
    /// zip, tar or tgz (YAML or JSON for a Lambda AppSpec), for an s3:// revision whose
    /// key does not say.
    #[arg(long)]
    bundle_type: Option<String>,
    /// A Lambda application's AppSpec (YAML or JSON): its content is the revision
    /// (AppSpecContent), and the deployment moves the alias it names.
    #[arg(long, conflicts_with_all = ["revision", "bundle_type", "file_exists_behavior"])]
    appspec: Option<PathBuf>,
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
    } else if key.ends_with(".yml") || key.ends_with(".yaml") {
        Some("YAML")
    } else if key.ends_with(".json") {
        Some("JSON")
    } else {
        None
    }
}

async fn revision(gantry: &Gantry, args: &DeployArgs) -> anyhow::Result<Value> {
    if let Some(path) = &args.appspec {
        let content = std::fs::read_to_string(path)
            .map_err(|error| anyhow::anyhow!("--appspec {}: {error}", path.display()))?;
        return Ok(
            json!({"revisionType": "AppSpecContent", "appSpecContent": {"content": content}}),
        );
    }
    if args.revision == "latest" {
        // Newest first: the first page's first.
        let (_, listed): (_, ListApplicationRevisionsOutput) = gantry
            .call(
                "ListApplicationRevisions",
                json!({"applicationName": args.app}),
            )
            .await?;
        return listed
            .revisions
            .into_iter()
            .next()
            .map(|revision| json!(revision))
            .ok_or_else(|| anyhow::anyhow!("application {} has no pushed revision; run `gantry push` first, or pass --revision s3://bucket/key (a Lambda application: --appspec FILE)", args.app));
    }
    if let Some(commit) = args.revision.strip_prefix("github:") {
        return crate::push::github_revision("--revision", commit);
    }
    let (bucket, key) = args
        .revision
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--revision: expected `latest`, s3://bucket/key or github:OWNER/REPO@COMMIT, found {:?}",
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
pub async fn targets(gantry: &Gantry, deployment_id: &str) -> anyhow::Result<Vec<InstanceTarget>> {
    let listed: ListDeploymentTargetsOutput = gantry
        .list_all(
            "ListDeploymentTargets",
            json!({"deploymentId": deployment_id}),
        )
        .await?;
    let ids = listed.target_ids;
    let mut targets = Vec::with_capacity(ids.len());
    // BatchGetDeploymentTargets takes 25 at a time, as CodeDeploy's does.
    for chunk in ids.chunks(25) {
        let (_, got): (_, BatchGetDeploymentTargetsOutput) = gantry
            .call(
                "BatchGetDeploymentTargets",
                json!({"deploymentId": deployment_id, "targetIds": chunk}),
            )
            .await?;
        targets.extend(
            got.deployment_targets
                .into_iter()
                .filter_map(|found| found.instance_target),
        );
    }
    Ok(targets)
}

pub fn exit_code(info: &DeploymentInfo) -> ExitCode {
    match info.status {
        DeploymentStatus::Failed | DeploymentStatus::Stopped => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    }
}

/// The event a host is on: the one in progress, else the last that ended.
pub fn current_event(target: &InstanceTarget) -> (String, String) {
    let events = &target.lifecycle_events;
    let running = events.iter().find(|e| e.status == EventStatus::InProgress);
    let last = events
        .iter()
        .rev()
        .find(|e| e.status != EventStatus::Pending);
    match running.or(last) {
        Some(event) => (
            event.lifecycle_event_name.clone(),
            serialized_name(&event.status),
        ),
        None => ("waiting for the host's agent".into(), String::new()),
    }
}

fn failure_text(target: &InstanceTarget) -> Option<String> {
    let failed = target
        .lifecycle_events
        .iter()
        .find(|e| e.status == EventStatus::Failed)?;
    let diagnostics = failed.diagnostics.as_ref();
    let message = diagnostics
        .map(|d| d.message.as_str())
        .filter(|m| !m.is_empty());
    let mut text = format!(
        "{} failed in {}: {}",
        target.target_id,
        failed.lifecycle_event_name,
        message.unwrap_or("no message")
    );
    if let Some(script) = diagnostics
        .map(|d| d.script_name.as_str())
        .filter(|s| !s.is_empty())
    {
        text.push_str(&format!(" [{script}]"));
    }
    let tail: Vec<&str> = diagnostics
        .map_or("", |d| d.log_tail.as_str())
        .lines()
        .collect();
    for line in &tail[tail.len().saturating_sub(5)..] {
        text.push_str(&format!("\n    | {line}"));
    }
    Some(text)
}

pub fn summary(info: &DeploymentInfo, targets: &[InstanceTarget]) -> String {
    let overview = &info.deployment_overview;
    let revision = match &info.revision {
        RevisionLocation::S3 { s3_location } => s3_location.key.as_str(),
        _ => "revision",
    };
    let mut text = format!(
        "{} {} ({revision} to {}/{}, {})\n  {} succeeded, {} failed, {} skipped, {} in progress, {} pending",
        info.deployment_id,
        serialized_name(&info.status),
        info.application_name,
        info.deployment_group_name,
        info.deployment_config_name,
        overview.succeeded,
        overview.failed,
        overview.skipped,
        overview.in_progress,
        overview.pending,
    );
    if let Some(fleets) = blue_green_fleets(info) {
        text.push_str(&format!("\n  {fleets}"));
    }
    if let Some(error) = &info.error_information {
        text.push_str(&format!("\n  {}", error.message));
    }
    let rollback = info.rollback_info.as_ref();
    if let Some(rollback) = rollback.and_then(|r| r.rollback_deployment_id.as_deref()) {
        text.push_str(&format!("\n  rolled back by {rollback}"));
    }
    if let Some(message) = rollback.and_then(|r| r.rollback_message.as_deref()) {
        text.push_str(&format!("\n  {message}"));
    }
    for failed in &info.failed_effects {
        text.push_str(&format!(
            "\n  warning: {} failed {} time(s): {}",
            failed.effect, failed.failures, failed.reason,
        ));
    }
    if info.forged_reports > 0 {
        text.push_str(&format!(
            "\n  warning: {} report(s) dropped: sent by an identity other than their host's",
            info.forged_reports
        ));
    }
    let blue_green = info.deployment_style.deployment_type == BLUE_GREEN;
    for target in targets {
        let (event, status) = current_event(target);
        let fleet = match (blue_green, target.instance_label.as_str()) {
            (true, "Green") => "replacement ",
            (true, _) => "original    ",
            (false, _) => "",
        };
        text.push_str(&format!(
            "\n  {fleet}{:<20} {:<10} {event} {status}",
            target.target_id,
            serialized_name(&target.status),
        ));
    }
    text
}

/// What a blue/green deployment is doing, in words (Gantry's `blueGreenProgress`).
pub fn blue_green_stage(info: &DeploymentInfo) -> Option<String> {
    let progress = info.blue_green_progress.as_ref()?;
    let replacement = progress.replacement_instances;
    let stage = match progress.stage {
        Stage::Provisioning => format!(
            "provisioning the replacement fleet ({})",
            progress
                .replacement_auto_scaling_group
                .as_deref()
                .unwrap_or("a copy of the Auto Scaling group")
        ),
        Stage::Installing => format!(
            "installing on the replacement fleet ({} of {replacement} ready)",
            progress.installed
        ),
        Stage::Ready => {
            "replacement fleet ready: waiting for ContinueDeployment to reroute traffic".to_owned()
        }
        Stage::Rerouting => format!(
            "rerouting traffic to the replacement fleet ({} of {replacement} sent)",
            progress.rerouted
        ),
        Stage::BlockingOriginal => "taking the original fleet out of the load balancer".to_owned(),
        Stage::TerminationWait => {
            "traffic rerouted; waiting to terminate the original fleet".to_owned()
        }
    };
    Some(stage)
}

/// The two fleets of a blue/green deployment, for the summary.
fn blue_green_fleets(info: &DeploymentInfo) -> Option<String> {
    let progress = info.blue_green_progress.as_ref()?;
    let stage = blue_green_stage(info)?;
    let mut text = format!(
        "blue/green: {} replacement and {} original instances",
        progress.replacement_instances, progress.original_instances
    );
    if let Some(group) = &progress.replacement_auto_scaling_group {
        text.push_str(&format!(" (replacement group {group})"));
    }
    if info.status == DeploymentStatus::InProgress {
        text.push_str(&format!("; {stage}"));
    }
    Some(text)
}

pub fn logs(targets: &[InstanceTarget], instance: Option<&str>, event: Option<&str>) -> String {
    let mut text = String::new();
    for target in targets {
        let id = &target.target_id;
        if instance.is_some_and(|wanted| wanted != id) {
            continue;
        }
        for record in &target.lifecycle_events {
            let name = &record.lifecycle_event_name;
            if event.is_some_and(|wanted| wanted != name) || record.status == EventStatus::Pending {
                continue;
            }
            let diagnostics = record.diagnostics.as_ref();
            text.push_str(&format!(
                "{id} {name} {} {}\n",
                serialized_name(&record.status),
                diagnostics.map_or(String::new(), |d| serialized_name(&d.error_code)),
            ));
            if let Some(message) = diagnostics
                .map(|d| d.message.as_str())
                .filter(|m| !m.is_empty())
            {
                text.push_str(&format!("  {message}\n"));
            }
            for line in diagnostics.map_or("", |d| d.log_tail.as_str()).lines() {
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
    let (created, typed): (_, CreateDeploymentOutput) =
        gantry.invoke_typed("create-deployment", &input).await?;
    let id = typed.deployment_id;
    if args.no_wait {
        crate::output::show(output, &created, |_| id.clone());
        return Ok(ExitCode::SUCCESS);
    }
    let interactive = output == Output::Text && std::io::stdout().is_terminal();
    if let lambda::Deployment::Lambda(_) = lambda::deployment(gantry, &id).await? {
        return lambda::follow(gantry, &id, output, interactive).await;
    }
    let (mut info, code) = follow(gantry, &id, output, interactive).await?;
    if rolls_back(&info) {
        info = wait_for_rollback(gantry, &id, info).await?;
    }
    let rollback = info
        .rollback_info
        .as_ref()
        .and_then(|rollback| rollback.rollback_deployment_id.clone());
    if let Some(rollback) = rollback.as_deref() {
        if output == Output::Text {
            println!("\nautomatic rollback {rollback}: redeploying the last successful revision");
        }
        let (rolled_back, _) = follow(gantry, rollback, output, interactive).await?;
        if output == Output::Json {
            crate::output::show(
                output,
                &json!({"deploymentInfo": info, "rollback": rolled_back}),
                |_| String::new(),
            );
        }
        return Ok(code);
    }
    if output == Output::Json {
        crate::output::show(output, &json!({"deploymentInfo": info}), |_| String::new());
    }
    Ok(code)
}

/// Whether the deployment's end starts an automatic rollback.
pub fn rolls_back(info: &DeploymentInfo) -> bool {
    let code = info
        .error_information
        .as_ref()
        .map(|error| error.code.as_str());
    let wanted = match (info.status, code) {
        (DeploymentStatus::Failed, _) => ROLLBACK_ON_FAILURE,
        // Stopped by an alarm in ALARM (not by a failed poll, which never rolls back).
        (DeploymentStatus::Stopped, Some("ALARM_ACTIVE")) => ROLLBACK_ON_ALARM,
        (DeploymentStatus::Stopped, _) => ROLLBACK_ON_REQUEST,
        _ => return false,
    };
    let config = &info.auto_rollback_configuration;
    config.enabled && config.events.iter().any(|event| event == wanted)
}

/// The rollback starts just after the deployment ends; wait (briefly) until it is linked.
async fn wait_for_rollback(
    gantry: &Gantry,
    id: &str,
    mut info: DeploymentInfo,
) -> anyhow::Result<DeploymentInfo> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while info.rollback_info.is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        info = gantry.deployment(id).await?;
    }
    Ok(info)
}

/// A deployment's overall progress as `gantry deploy` shows it, from successive polls of
/// GetDeployment's `deploymentInfo` and the deployment's targets (BatchGetDeploymentTargets'
/// `instanceTarget`s), e.g. "1 of 4 hosts done, 2 running (at most 2 at once), 1 waiting,
/// about 6s left".
///
/// There are no fixed batches to count: the control plane starts hosts whenever the
/// minimum-healthy rule allows, so the line says only what the polls show.
/// - The counts are `deploymentOverview`'s: done is Succeeded + Failed, running is
///   InProgress, waiting is Pending.
/// - "at most N at once" is the most hosts any poll has seen in progress (only polls see
///   it; hosts' own clocks are never compared with each other).
/// - The estimate appears once a host has finished: each remaining host is expected to
///   take the median run of the hosts that succeeded (else of those that failed),
///   measured from its first lifecycle event's start to its last event's end, as its agent
///   timed them; running hosts have already used the time since a poll first saw them in
///   progress; waiting hosts start as the observed concurrency frees a host.
#[derive(Debug, Default)]
pub struct Progress {
    most_running: u64,
    /// When a poll first saw each host in progress (the CLI's clock, seconds).
    first_seen_running: BTreeMap<String, f64>,
    /// The counts of the last poll, to tell a change.
    last: Option<Counts>,
}

/// `deploymentOverview`'s counts and the most hosts seen running at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    pending: u64,
    running: u64,
    succeeded: u64,
    failed: u64,
    skipped: u64,
    most_running: u64,
}

/// One poll's progress line.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressLine {
    pub text: String,
    /// Whether a count changed since the previous poll (the estimate alone does not count,
    /// or a line would be printed at every poll).
    pub changed: bool,
    /// For the bar: hosts that will not run any more (done or skipped)...
    pub ended: u64,
    /// ...of all the deployment's hosts.
    pub total: u64,
}

impl Progress {
    /// Takes one poll, made at `now` (seconds since the Unix epoch, the CLI's clock).
    pub fn observe(
        &mut self,
        now: f64,
        info: &DeploymentInfo,
        targets: &[InstanceTarget],
    ) -> ProgressLine {
        let overview = &info.deployment_overview;
        let running = u64::from(overview.in_progress);
        self.most_running = self.most_running.max(running);
        let counts = Counts {
            pending: u64::from(overview.pending),
            running,
            succeeded: u64::from(overview.succeeded),
            failed: u64::from(overview.failed),
            skipped: u64::from(overview.skipped),
            most_running: self.most_running,
        };
        for target in targets {
            if target.status == TargetStatus::InProgress {
                self.first_seen_running
                    .entry(target.target_id.clone())
                    .or_insert(now);
            }
        }
        let done = counts.succeeded + counts.failed;
        let total = done + counts.running + counts.pending + counts.skipped;
        let in_progress = info.status == DeploymentStatus::InProgress;
        let mut text = match blue_green_stage(info).filter(|_| in_progress) {
            Some(stage) => format!("{stage}: {done} of {total} hosts done"),
            None => format!("{done} of {total} hosts done"),
        };
        if counts.failed > 0 {
            text.push_str(&format!(" ({} failed)", counts.failed));
        }
        text.push_str(&format!(", {running} running"));
        if counts.most_running > 0 {
            text.push_str(&format!(" (at most {} at once)", counts.most_running));
        }
        if counts.pending > 0 {
            text.push_str(&format!(", {} waiting", counts.pending));
        }
        if counts.skipped > 0 {
            text.push_str(&format!(", {} skipped", counts.skipped));
        }
        if !info.is_over()
            && let Some(left) = self.estimate(now, &counts, targets)
        {
            text.push_str(&format!(", about {} left", about(left)));
        }
        let changed = self.last != Some(counts);
        self.last = Some(counts);
        ProgressLine {
            text,
            changed,
            ended: done + counts.skipped,
            total,
        }
    }

    /// Seconds until the last host ends, if a host has finished to measure by.
    fn estimate(&self, now: f64, counts: &Counts, targets: &[InstanceTarget]) -> Option<f64> {
        if counts.pending + counts.running == 0 {
            return None;
        }
        let mut runs = runs_of(targets, TargetStatus::Succeeded);
        if runs.is_empty() {
            runs = runs_of(targets, TargetStatus::Failed);
        }
        let typical = median(runs)?;
        // Each slot is one host that may run at once: when it is next free.
        let mut slots: Vec<f64> = targets
            .iter()
            .filter(|t| t.status == TargetStatus::InProgress)
            .map(|t| {
                let since = self
                    .first_seen_running
                    .get(&t.target_id)
                    .map_or(0.0, |seen| now - seen);
                (typical - since).max(0.0)
            })
            .collect();
        let concurrency = counts.most_running.max(1) as usize;
        while slots.len() < concurrency {
            slots.push(0.0);
        }
        for _ in 0..counts.pending {
            let next = slots
                .iter_mut()
                .min_by(|a, b| a.total_cmp(b))
                .expect("at least one slot");
            *next += typical;
        }
        slots.into_iter().reduce(f64::max)
    }
}
/// How long each host with this status ran, by its agent's clock.
fn runs_of(targets: &[InstanceTarget], status: TargetStatus) -> Vec<f64> {
    targets
        .iter()
        .filter(|t| t.status == status)
        .filter_map(run_seconds)
        .collect()
}

/// From the start of a host's first lifecycle event to the end of its last.
fn run_seconds(target: &InstanceTarget) -> Option<f64> {
    let events = &target.lifecycle_events;
    let start = events
        .iter()
        .filter_map(|e| e.start_time)
        .reduce(f64::min)?;
    let end = events.iter().filter_map(|e| e.end_time).reduce(f64::max)?;
    (end >= start).then_some(end - start)
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    })
}

/// A time left, whole seconds (at least one), as "45s", "2m 05s" or "1h 02m".
fn about(seconds: f64) -> String {
    let seconds = (seconds.round() as u64).max(1);
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m {:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h {:02}m", seconds / 3600, seconds % 3600 / 60),
    }
}

pub fn unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// Polls a deployment until it ends, showing each host's progress (bars on a terminal,
/// a line per change otherwise) and each failure as it happens.
async fn follow(
    gantry: &Gantry,
    id: &str,
    output: Output,
    interactive: bool,
) -> anyhow::Result<(DeploymentInfo, ExitCode)> {
    let multi = MultiProgress::with_draw_target(if interactive {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let overall = multi.add(ProgressBar::new(0));
    overall.set_style(
        ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    overall.set_prefix(id.to_owned());
    let host_style =
        ProgressStyle::with_template("  {spinner} {prefix:<20} {msg}").expect("a valid template");
    let mut bars: BTreeMap<String, ProgressBar> = BTreeMap::new();
    let mut last_seen: BTreeMap<String, (String, String, String)> = BTreeMap::new();
    let mut reported_failures = std::collections::BTreeSet::new();
    let mut progress = Progress::default();
    let text = output == Output::Text;
    loop {
        let info = gantry.deployment(id).await?;
        let targets = targets(gantry, id).await?;
        let line = progress.observe(unix_seconds(), &info, &targets);
        overall.set_length(line.total);
        overall.set_position(line.ended);
        overall.set_message(format!("{}: {}", serialized_name(&info.status), line.text));
        if line.changed && text && !interactive {
            println!("{}", line.text);
        }
        for target in &targets {
            let host = target.target_id.clone();
            let (event, event_status) = current_event(target);
            let status = serialized_name(&target.status);
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
        if info.is_over() {
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
pub(crate) mod tests;
