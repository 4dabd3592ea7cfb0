//! `gantry deploy` and `gantry status` for the Lambda compute platform: a deployment
//! moves one alias from its current version to a target version in steps, so what is
//! shown is the alias's split ("shop:live  v1 90% → v2 10%, next step in 4m 12s") each
//! time it changes, each lifecycle event as it ends ("BeforeAllowTraffic Succeeded
//! (1.2 s)"), and the end. Read from GetDeployment's `deploymentInfo` (computePlatform
//! `Lambda`) and GetDeploymentTarget's `lambdaTarget`.

use crate::client::Gantry;
use crate::deploy::unix_seconds;
use crate::output::Output;
use gantry_api::deployment::DeploymentInfo;
use gantry_api::lambda::{LambdaDeploymentInfo, LambdaRevision};
use gantry_api::model::serialized_name;
use gantry_api::target::{
    GetDeploymentTargetOutput, LambdaFunctionInfo, LambdaTarget, LifecycleEventInfo,
    ListDeploymentTargetsOutput,
};
use gantry_core::deployment::{DeploymentStatus, TargetStatus};
use gantry_core::wire::EventStatus;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::Duration;

/// A deployment of either platform, as GetDeployment's `computePlatform` says.
pub enum Deployment {
    Server(Box<DeploymentInfo>),
    Lambda(Box<LambdaDeploymentInfo>),
}

/// GetDeployment's `deploymentInfo`, read by its `computePlatform`.
pub async fn deployment(gantry: &Gantry, id: &str) -> anyhow::Result<Deployment> {
    let answer = gantry
        .api("GetDeployment", json!({"deploymentId": id}))
        .await?;
    read_deployment(&answer["deploymentInfo"])
}

fn read_deployment(info: &Value) -> anyhow::Result<Deployment> {
    let what = |error: serde_json::Error| {
        anyhow::anyhow!(
            "GetDeployment answered with a deploymentInfo this gantry cannot read: {error}"
        )
    };
    Ok(match info["computePlatform"].as_str() {
        Some("Lambda") => Deployment::Lambda(Box::new(
            serde_json::from_value(info.clone()).map_err(what)?,
        )),
        _ => Deployment::Server(Box::new(
            serde_json::from_value(info.clone()).map_err(what)?,
        )),
    })
}

/// The deployment's one target id (`function:alias`), once it has one.
async fn target_id(gantry: &Gantry, id: &str) -> anyhow::Result<Option<String>> {
    let (_, listed): (_, ListDeploymentTargetsOutput) = gantry
        .call("ListDeploymentTargets", json!({"deploymentId": id}))
        .await?;
    Ok(listed.target_ids.into_iter().next())
}

/// The alias the deployment moves, as GetDeploymentTarget's `lambdaTarget`.
async fn alias(gantry: &Gantry, id: &str, target_id: &str) -> anyhow::Result<Option<LambdaTarget>> {
    let (_, got): (_, GetDeploymentTargetOutput) = gantry
        .call(
            "GetDeploymentTarget",
            json!({"deploymentId": id, "targetId": target_id}),
        )
        .await?;
    Ok(got.deployment_target.lambda_target)
}

/// The alias of a deployment, looked up from scratch (for `gantry status`).
pub async fn alias_of(gantry: &Gantry, id: &str) -> anyhow::Result<Option<LambdaTarget>> {
    match target_id(gantry, id).await? {
        Some(target) => alias(gantry, id, &target).await,
        None => Ok(None),
    }
}

/// A share of traffic in percent: "10%", "12.5%".
pub fn percent(share: f64) -> String {
    let share = share.clamp(0.0, 100.0);
    if (share - share.round()).abs() < 0.05 {
        format!("{}%", share.round())
    } else {
        format!("{share:.1}%")
    }
}

/// A version as the split names it: "v3" for a published version number, else as it is.
fn version(name: &str) -> String {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
        format!("v{name}")
    } else {
        name.to_owned()
    }
}

/// The alias's split between its versions: "v1 90% → v2 10%".
pub fn split(function: &LambdaFunctionInfo) -> String {
    let target = function.target_version_weight.clamp(0.0, 100.0);
    format!(
        "{} {} → {} {}",
        version(&function.current_version),
        percent(100.0 - target),
        version(&function.target_version),
        percent(target),
    )
}

/// A time to wait, whole seconds: "45s", "4m 12s", "1h 02m"; "0s" when due.
pub fn wait(seconds: f64) -> String {
    let seconds = seconds.max(0.0).round() as u64;
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m {:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h {:02}m", seconds / 3600, seconds % 3600 / 60),
    }
}

/// The line for the alias at `now` (epoch seconds), while the deployment runs:
/// "shop:live  v1 90% → v2 10%, next step in 4m 12s", or what it waits for instead.
pub fn split_line(target: &LambdaTarget, now: f64) -> String {
    let function = &target.lambda_function_info;
    let mut line = format!("{}  {}", target.target_id, split(function));
    if let Some(due) = function.next_step_time {
        line.push_str(&format!(", next step in {}", wait(due - now)));
    } else if let Some(running) = target
        .lifecycle_events
        .iter()
        .find(|event| event.status == EventStatus::InProgress)
        .filter(|event| event.lifecycle_event_name != "AllowTraffic")
    {
        line.push_str(&format!(
            ", waiting for the {} hook",
            running.lifecycle_event_name
        ));
    }
    line
}

/// Where the alias stands once the deployment is over: on the target version, or back
/// (or still) on the current one.
pub fn end_split_line(target: &LambdaTarget, status: DeploymentStatus) -> String {
    let function = &target.lambda_function_info;
    let current = version(&function.current_version);
    let moved = target
        .lifecycle_events
        .iter()
        .any(|event| event.lifecycle_event_name == "AllowTraffic" && event.start_time.is_some());
    let text = match status {
        DeploymentStatus::Succeeded => {
            format!("all traffic on {}", version(&function.target_version))
        }
        _ if moved => format!("all traffic back on {current}"),
        _ => format!("all traffic still on {current}"),
    };
    format!("{}  {text}", target.target_id)
}

/// A lifecycle event that has ended: "BeforeAllowTraffic Succeeded (1.2 s)"; None while
/// it has not.
pub fn event_line(event: &LifecycleEventInfo) -> Option<String> {
    if !event.status.is_terminal() {
        return None;
    }
    let mut line = format!(
        "{} {}",
        event.lifecycle_event_name,
        serialized_name(&event.status)
    );
    if let (Some(start), Some(end)) = (event.start_time, event.end_time) {
        line.push_str(&format!(" ({:.1} s)", (end - start).max(0.0)));
    }
    Some(line)
}

/// The deployment's end: "Succeeded", "Failed: <errorInformation>", "Stopped".
pub fn end_line(info: &LambdaDeploymentInfo) -> String {
    let status = serialized_name(&info.status);
    match (&info.error_information, info.status) {
        (_, DeploymentStatus::Succeeded) => status,
        (Some(error), _) if !error.message.is_empty() => format!("{status}: {}", error.message),
        _ => status,
    }
}

/// `gantry status` of a Lambda deployment.
pub fn summary(info: &LambdaDeploymentInfo, target: Option<&LambdaTarget>, now: f64) -> String {
    let revision = match &info.revision {
        LambdaRevision::S3 { s3_location } => s3_location.key.as_str(),
        _ => "AppSpec",
    };
    let mut text = format!(
        "{} {} ({revision} to {}/{}, {})",
        info.deployment_id,
        serialized_name(&info.status),
        info.application_name,
        info.deployment_group_name,
        info.deployment_config_name,
    );
    if let Some(target) = target {
        let over = info.status.is_terminal();
        let line = if over {
            end_split_line(target, info.status)
        } else {
            split_line(target, now)
        };
        text.push_str(&format!("\n  {line}"));
        for event in &target.lifecycle_events {
            let line = event_line(event).unwrap_or_else(|| {
                format!(
                    "{} {}",
                    event.lifecycle_event_name,
                    serialized_name(&event.status)
                )
            });
            text.push_str(&format!("\n  {line}"));
        }
    }
    if let Some(error) = &info.error_information {
        text.push_str(&format!("\n  {}", error.message));
    }
    for failed in &info.failed_effects {
        text.push_str(&format!(
            "\n  warning: {} failed {} time(s): {}",
            failed.effect, failed.failures, failed.reason,
        ));
    }
    text
}

/// What a poll of the deployment brings that the previous polls did not: the lines to
/// print. Pure, so the rendering is tested without a control plane.
#[derive(Debug, Default)]
pub struct Watch {
    /// The target version's weight last shown.
    weight: Option<f64>,
    /// Lifecycle events whose end was shown.
    ended: BTreeSet<String>,
    over: bool,
}

impl Watch {
    /// The new lines for one poll made at `now` (epoch seconds).
    pub fn observe(
        &mut self,
        info: &LambdaDeploymentInfo,
        target: Option<&LambdaTarget>,
        now: f64,
    ) -> Vec<String> {
        let mut lines = Vec::new();
        let over = info.status.is_terminal();
        if let Some(target) = target {
            for event in &target.lifecycle_events {
                if let Some(line) = event_line(event)
                    && event.status != EventStatus::Skipped
                    && self.ended.insert(event.lifecycle_event_name.clone())
                {
                    lines.push(line);
                }
            }
            // GetDeploymentTarget is read after GetDeployment: it may already show the
            // end (the alias rolled back) that the next poll's GetDeployment will.
            let moving = matches!(
                target.status,
                TargetStatus::Pending | TargetStatus::InProgress
            );
            let weight = target.lambda_function_info.target_version_weight;
            if !over && moving && self.weight != Some(weight) {
                self.weight = Some(weight);
                lines.push(split_line(target, now));
            }
        }
        if over && !self.over {
            self.over = true;
            lines.push(end_line(info));
            if let Some(target) = target {
                lines.push(end_split_line(target, info.status));
            }
        }
        lines
    }
}

/// Polls a Lambda deployment until it ends (GetDeployment, GetDeploymentTarget), printing
/// what changes; on a terminal a bar shows the target version's share and the time to
/// the next step.
pub async fn follow(
    gantry: &Gantry,
    id: &str,
    output: Output,
    interactive: bool,
) -> anyhow::Result<ExitCode> {
    let text = output == Output::Text;
    let bar = ProgressBar::with_draw_target(
        Some(100),
        if interactive && text {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(id.to_owned());
    let mut watch = Watch::default();
    let mut target_id_found: Option<String> = None;
    loop {
        let Deployment::Lambda(info) = deployment(gantry, id).await? else {
            anyhow::bail!("{id} is not a Lambda deployment");
        };
        if target_id_found.is_none() {
            target_id_found = target_id(gantry, id).await?;
        }
        let target = match &target_id_found {
            Some(target) => alias(gantry, id, target).await?,
            None => None,
        };
        let now = unix_seconds();
        for line in watch.observe(&info, target.as_ref(), now) {
            if text {
                bar.suspend(|| println!("{line}"));
            }
        }
        if let Some(target) = &target {
            bar.set_position(target.lambda_function_info.target_version_weight.round() as u64);
            bar.set_message(split_line(target, now));
        }
        if info.status.is_terminal() {
            bar.finish_and_clear();
            if output == Output::Json {
                crate::output::show(output, &json!({"deploymentInfo": info}), |_| String::new());
            }
            return Ok(exit_code(info.status));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub fn exit_code(status: DeploymentStatus) -> ExitCode {
    match status {
        DeploymentStatus::Failed | DeploymentStatus::Stopped => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    }
}

#[cfg(test)]
mod tests;
