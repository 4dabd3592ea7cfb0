//! The console's HTML, rendered on the server. maud escapes every value it is given, so
//! what hosts report (script output, messages) reaches the page as text, never markup.
//!
//! A status is always a word and a symbol; colour only repeats it.

use super::guard::TOKEN_FIELD;
use crate::deploy::{ProgressLine, blue_green_stage, current_event, rolls_back};
use crate::reads::revision_place;
use aws_sdk_lambda::primitives::{DateTime, DateTimeFormat};
use gantry_api::deployment::DeploymentInfo;
use gantry_api::group::DeploymentGroupInfo;
use gantry_api::model::{BLUE_GREEN, LastDeploymentInfo, serialized_name};
use gantry_api::target::{InstanceTarget, LifecycleEventInfo};
use gantry_core::deployment::Stage;
use gantry_core::wire::{EventStatus, RevisionLocation};
use maud::{DOCTYPE, Markup, html};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

/// What a path segment keeps as it is: letters, digits, `-`, `_` and `~` (`.` is
/// encoded, so that no name is ever `.` or `..` to a browser).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'~');

/// A path segment, percent-encoded: names may hold any character.
pub fn segment(name: &str) -> String {
    utf8_percent_encode(name, SEGMENT).to_string()
}

/// The link to a deployment's page.
pub fn deployment_href(id: &str) -> String {
    format!("/deployments/{}", segment(id))
}

fn application_href(name: &str) -> String {
    format!("/applications/{}", segment(name))
}

/// A time in epoch seconds, as UTC.
fn time(seconds: f64) -> String {
    // To the millisecond: the float's last digits are noise.
    DateTime::from_millis((seconds * 1000.0).round() as i64)
        .fmt(DateTimeFormat::DateTime)
        .map(|text| text.replace('T', " "))
        .unwrap_or_else(|_| format!("{seconds}"))
}

fn duration(seconds: f64) -> String {
    if seconds < 10.0 {
        format!("{seconds:.1} s")
    } else if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else {
        format!(
            "{}m {:02}s",
            (seconds / 60.0) as u64,
            (seconds % 60.0) as u64
        )
    }
}

/// A status as a word with a symbol, classed by the word for colour.
fn status(word: &str) -> Markup {
    let symbol = match word {
        "Succeeded" => "✓",
        "Failed" => "✗",
        "Stopped" => "■",
        "InProgress" => "▶",
        "Skipped" => "↷",
        "Ready" => "◆",
        "Unknown" => "?",
        _ => "…",
    };
    html! {
        span class={ "status " (word.to_ascii_lowercase()) } {
            span aria-hidden="true" { (symbol) } " " (word)
        }
    }
}

/// The page around `body`, with the navigation.
pub fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Gantry" }
                link rel="stylesheet" href="/console.css";
                script src="/console.js" defer {}
            }
            body {
                header {
                    nav aria-label="Sections" {
                        a.brand href="/" { "Gantry" }
                        a href="/" { "Applications" }
                        a href="/deployments" { "Deployments" }
                        a href="/instances" { "On-premises instances" }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A page saying what went wrong (an error from Gantry, a refused request).
pub fn problem(title: &str, message: &str) -> Markup {
    layout(
        title,
        html! {
            h1 { (title) }
            p.problem role="alert" { (message) }
            p { a href="/" { "Back to the applications" } }
        },
    )
}

pub fn applications(names: &[String]) -> Markup {
    layout(
        "Applications",
        html! {
            h1 { "Applications" }
            @if names.is_empty() {
                p { "No applications yet: " code { "gantry app create --name NAME" } "." }
            } @else {
                ul.list {
                    @for name in names {
                        li { a href=(application_href(name)) { (name) } }
                    }
                }
            }
        },
    )
}

fn last_deployment(last: Option<&LastDeploymentInfo>) -> Markup {
    match last {
        Some(last) => html! {
            a href=(deployment_href(&last.deployment_id)) { (last.deployment_id) }
            " " (status(&last.status))
            br;
            small { (time(last.end_time.unwrap_or(last.create_time))) }
        },
        None => html! { "none" },
    }
}

fn group_targets(group: &DeploymentGroupInfo) -> String {
    let tags = |filters: &[gantry_core::planner::TagFilter]| {
        filters
            .iter()
            .map(|filter| {
                format!(
                    "{}={}",
                    filter.key.as_deref().unwrap_or("*"),
                    filter.value.as_deref().unwrap_or("*")
                )
            })
            .collect::<Vec<_>>()
    };
    let mut parts = Vec::new();
    let ec2 = tags(&group.ec2_tag_filters);
    if !ec2.is_empty() {
        parts.push(format!("EC2 tags {}", ec2.join(", ")));
    }
    let on_premises = tags(&group.on_premises_instance_tag_filters);
    if !on_premises.is_empty() {
        parts.push(format!("on-premises tags {}", on_premises.join(", ")));
    }
    if group.ec2_tag_set.is_some() {
        parts.push("an EC2 tag set".into());
    }
    if group.on_premises_tag_set.is_some() {
        parts.push("an on-premises tag set".into());
    }
    let groups: Vec<&str> = group
        .auto_scaling_groups
        .iter()
        .map(|group| group.name.as_str())
        .collect();
    if !groups.is_empty() {
        parts.push(format!("Auto Scaling groups {}", groups.join(", ")));
    }
    if parts.is_empty() {
        "no targets".into()
    } else {
        parts.join("; ")
    }
}

/// An action button: a form of its own, carrying the session's token.
fn action(path: &str, token: &str, label: &str, fields: &[(&str, &str)], class: &str) -> Markup {
    html! {
        form.action method="post" action=(path) {
            input type="hidden" name=(TOKEN_FIELD) value=(token);
            @for (name, value) in fields {
                input type="hidden" name=(name) value=(value);
            }
            button type="submit" class=(class) { (label) }
        }
    }
}

pub fn application(
    name: &str,
    groups: &[DeploymentGroupInfo],
    revisions: &[RevisionLocation],
    token: &str,
) -> Markup {
    let base = application_href(name);
    layout(
        name,
        html! {
            h1 { "Application " (name) }
            p { a href={ "/deployments?application=" (segment(name)) } { "Its deployments" } }
            h2 { "Deployment groups" }
            @if groups.is_empty() {
                p { "No deployment groups: " code { "gantry group create" } "." }
            } @else {
                table {
                    thead { tr {
                        th scope="col" { "Group" } th scope="col" { "Targets" }
                        th scope="col" { "Configuration" } th scope="col" { "Style" }
                        th scope="col" { "Last successful" } th scope="col" { "Last attempted" }
                        th scope="col" { "Actions" }
                    } }
                    tbody {
                        @for group in groups {
                            @let path = format!("{base}/groups/{}", segment(&group.deployment_group_name));
                            tr {
                                th scope="row" { (group.deployment_group_name) }
                                td { (group_targets(group)) }
                                td { (group.deployment_config_name) }
                                td { (group.deployment_style.deployment_type) ", " (group.deployment_style.deployment_option) }
                                td { (last_deployment(group.last_successful_deployment.as_ref())) }
                                td { (last_deployment(group.last_attempted_deployment.as_ref())) }
                                td {
                                    @if !revisions.is_empty() {
                                        form.action method="post" action={ (path) "/deploy" } {
                                            input type="hidden" name=(TOKEN_FIELD) value=(token);
                                            label {
                                                "Revision "
                                                select name="revision" {
                                                    @for revision in revisions {
                                                        option value=(serde_json::to_string(revision).unwrap_or_default()) {
                                                            (revision_place(revision))
                                                        }
                                                    }
                                                }
                                            }
                                            " "
                                            button type="submit" { "Deploy" }
                                        }
                                    }
                                    @if group.last_successful_deployment.is_some() {
                                        (action(&format!("{path}/rollback"), token, "Roll back to the last successful revision", &[], "danger"))
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Revisions" }
            @if revisions.is_empty() {
                p { "No revisions registered: " code { "gantry push" } "." }
            } @else {
                ul.list {
                    @for revision in revisions { li { code { (revision_place(revision)) } } }
                }
            }
        },
    )
}

/// The statuses the deployments page filters on.
pub const STATUSES: [&str; 7] = [
    "Created",
    "Queued",
    "InProgress",
    "Ready",
    "Succeeded",
    "Failed",
    "Stopped",
];

/// How far back the deployments page looks, by its `since` parameter.
pub const SINCE: [(&str, &str, f64); 4] = [
    ("1h", "the last hour", 3600.0),
    ("24h", "the last day", 86_400.0),
    ("7d", "the last week", 604_800.0),
    ("all", "any time", 0.0),
];

/// The deployments page's filters, as its query holds them.
#[derive(Debug, Default, Clone)]
pub struct Filters {
    pub application: String,
    pub group: String,
    pub status: String,
    pub since: String,
}

impl Filters {
    /// The query string of these filters and a page token.
    pub fn query(&self, next: &str) -> String {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("application", &self.application)
            .append_pair("group", &self.group)
            .append_pair("status", &self.status)
            .append_pair("since", &self.since)
            .append_pair("next", next)
            .finish()
    }
}

pub fn deployments(filters: &Filters, rows: &[DeploymentInfo], next: Option<&str>) -> Markup {
    layout(
        "Deployments",
        html! {
            h1 { "Deployments" }
            form.filters method="get" action="/deployments" {
                label { "Application " input name="application" value=(filters.application); }
                label { "Group " input name="group" value=(filters.group); }
                label {
                    "Status "
                    select name="status" {
                        option value="" selected[filters.status.is_empty()] { "any" }
                        @for word in STATUSES {
                            option value=(word) selected[filters.status == word] { (word) }
                        }
                    }
                }
                label {
                    "Created in "
                    select name="since" {
                        @for (value, label, _) in SINCE {
                            option value=(value) selected[filters.since == value || (filters.since.is_empty() && value == "all")] { (label) }
                        }
                    }
                }
                " "
                button type="submit" { "Filter" }
            }
            @if rows.is_empty() {
                p { "No deployments match." }
            } @else {
                table {
                    thead { tr {
                        th scope="col" { "Deployment" } th scope="col" { "Status" }
                        th scope="col" { "Application / group" } th scope="col" { "Revision" }
                        th scope="col" { "Hosts (done / failed / running / waiting)" }
                        th scope="col" { "Created (UTC)" }
                    } }
                    tbody {
                        @for info in rows {
                            @let counts = &info.deployment_overview;
                            tr {
                                th scope="row" { a href=(deployment_href(&info.deployment_id)) { (info.deployment_id) } }
                                td { (status(&serialized_name(&info.status))) }
                                td { (info.application_name) " / " (info.deployment_group_name) }
                                td { code { (revision_place(&info.revision)) } }
                                td { (counts.succeeded) " / " (counts.failed) " / " (counts.in_progress) " / " (counts.pending) }
                                td { (time(info.create_time)) }
                            }
                        }
                    }
                }
            }
            @if let Some(next) = next {
                p { a rel="next" href={ "/deployments?" (filters.query(next)) } { "Older deployments →" } }
            }
        },
    )
}

pub fn instances(infos: &[Value]) -> Markup {
    let text = |info: &Value, field: &str| info[field].as_str().unwrap_or("").to_owned();
    layout(
        "On-premises instances",
        html! {
            h1 { "On-premises instances" }
            @if infos.is_empty() {
                p { "No on-premises instances registered: " code { "gantry instance register" } "." }
            } @else {
                table {
                    thead { tr {
                        th scope="col" { "Instance" } th scope="col" { "Identity" }
                        th scope="col" { "Registered (UTC)" } th scope="col" { "Tags" }
                    } }
                    tbody {
                        @for info in infos {
                            tr {
                                th scope="row" { (text(info, "instanceName")) }
                                td { code { (info["iamSessionArn"].as_str().or(info["iamUserArn"].as_str()).unwrap_or("")) } }
                                td {
                                    (info["registerTime"].as_f64().map(time).unwrap_or_default())
                                    @if let Some(gone) = info["deregisterTime"].as_f64() {
                                        br; small { "deregistered " (time(gone)) }
                                    }
                                }
                                td {
                                    @for tag in info["tags"].as_array().into_iter().flatten() {
                                        span.tag { (tag["Key"].as_str().unwrap_or("")) "=" (tag["Value"].as_str().unwrap_or("")) }
                                        " "
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// What the deployment page shows, as one poll read it.
pub struct DeploymentView<'a> {
    pub info: &'a DeploymentInfo,
    pub targets: &'a [InstanceTarget],
    pub progress: &'a ProgressLine,
    /// The CloudWatch alarms the deployment watches.
    pub alarms: &'a [String],
    /// The console's clock, epoch seconds: how long running events have taken.
    pub now: f64,
}

/// The deployment page's parts that change while it runs, by element id: the live
/// stream sends them again when they change.
pub fn live_parts(view: &DeploymentView, token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("summary", summary(view).into_string()),
        ("bar", bar(view).into_string()),
        ("hosts", hosts(view).into_string()),
        ("actions", actions(view, token).into_string()),
    ]
}

/// Whether a deployment will not change any more on its page: over, no host still
/// finishing the event it was in, and the rollback it starts (if any) linked.
pub fn settled(info: &DeploymentInfo) -> bool {
    info.is_over()
        && info.deployment_overview.in_progress == 0
        && (!rolls_back(info) || info.rollback_info.is_some())
}

pub fn deployment(view: &DeploymentView, token: &str) -> Markup {
    let info = view.info;
    let running = !settled(info);
    layout(
        &info.deployment_id,
        html! {
            h1 { "Deployment " (info.deployment_id) }
            p.meta {
                a href=(application_href(&info.application_name)) { (info.application_name) }
                " / " (info.deployment_group_name) " · " (info.deployment_config_name)
                " · " code { (revision_place(&info.revision)) }
            }
            div #summary aria-live="polite" { (summary(view)) }
            div #bar { (bar(view)) }
            div #actions { (actions(view, token)) }
            h2 { "Hosts" }
            div #hosts { (hosts(view)) }
            @if running {
                // The script swaps the parts in from the stream; without it, reload.
                p #live data-src={ (deployment_href(&info.deployment_id)) "/live" } {
                    "Live while it runs. "
                    a href=(deployment_href(&info.deployment_id)) { "Reload" }
                }
            }
        },
    )
}

fn summary(view: &DeploymentView) -> Markup {
    let info = view.info;
    let rollback = info.rollback_info.as_ref();
    html! {
        p.headline {
            (status(&serialized_name(&info.status)))
            @if let Some(stage) = blue_green_stage(info).filter(|_| !info.is_over()) {
                " · " (stage)
            }
        }
        dl {
            dt { "Created" } dd { (time(info.create_time)) }
            @if let Some(start) = info.start_time { dt { "Started" } dd { (time(start)) } }
            @if let Some(end) = info.complete_time {
                dt { "Ended" } dd { (time(end)) " (" (duration(end - info.start_time.unwrap_or(info.create_time))) ")" }
            }
            @if let Some(description) = &info.description { dt { "Description" } dd { (description) } }
            @if let Some(progress) = &info.blue_green_progress {
                dt { "Fleets" }
                dd {
                    (progress.replacement_instances) " replacement, " (progress.original_instances) " original"
                    @if let Some(group) = &progress.replacement_auto_scaling_group { " (replacement group " code { (group) } ")" }
                }
            }
            dt { "Alarms watched" }
            dd {
                @if view.alarms.is_empty() { "none" }
                @for alarm in view.alarms { code { (alarm) } " " }
            }
            @if let Some(error) = &info.error_information {
                dt { "Why it ended" } dd.problem { (error.message) " (" (error.code) ")" }
            }
            @if let Some(id) = rollback.and_then(|r| r.rollback_deployment_id.as_deref()) {
                dt { "Rolled back by" } dd { a #rollback href=(deployment_href(id)) { (id) } }
            }
            @if let Some(id) = rollback.and_then(|r| r.rollback_triggering_deployment_id.as_deref()) {
                dt { "Rolls back" } dd { a href=(deployment_href(id)) { (id) } }
            }
            @if let Some(message) = rollback.and_then(|r| r.rollback_message.as_deref()) {
                dt { "Rollback" } dd { (message) }
            }
            @for failed in &info.failed_effects {
                dt { "Warning" } dd { (failed.effect) " failed " (failed.failures) " time(s): " (failed.reason) }
            }
            @if info.forged_reports > 0 {
                dt { "Warning" } dd { (info.forged_reports) " report(s) dropped: sent by an identity other than their host's" }
            }
        }
    }
}

fn bar(view: &DeploymentView) -> Markup {
    let progress = view.progress;
    html! {
        p.progress {
            progress max=(progress.total.max(1)) value=(progress.ended) aria-label="Hosts done" {
                (progress.ended) " of " (progress.total)
            }
            " " span #progress-text { (progress.text) }
        }
    }
}

fn event_duration(event: &LifecycleEventInfo, now: f64) -> Option<String> {
    let start = event.start_time?;
    Some(duration(event.end_time.unwrap_or(now) - start).to_string())
}

fn hosts(view: &DeploymentView) -> Markup {
    let blue_green = view.info.deployment_style.deployment_type == BLUE_GREEN;
    html! {
        @if view.targets.is_empty() {
            p { "No hosts yet." }
        } @else {
            table.hosts {
                thead { tr {
                    th scope="col" { "Host" }
                    @if blue_green { th scope="col" { "Fleet" } }
                    th scope="col" { "Status" } th scope="col" { "Now" } th scope="col" { "Lifecycle events" }
                } }
                tbody {
                    @for target in view.targets {
                        @let (event, event_status) = current_event(target);
                        tr id={ "host-" (target.target_id) } data-status=(serialized_name(&target.status)) {
                            th scope="row" { (target.target_id) }
                            @if blue_green {
                                td { @if target.instance_label == "Green" { "replacement" } @else { "original" } }
                            }
                            td { (status(&serialized_name(&target.status))) }
                            td.now { (event) " " (event_status) }
                            td {
                                ol.events {
                                    @for record in &target.lifecycle_events {
                                        @let word = serialized_name(&record.status);
                                        li class={ "event " (word.to_ascii_lowercase()) } data-event=(record.lifecycle_event_name) {
                                            (record.lifecycle_event_name) " " (status(&word))
                                            @if let Some(took) = event_duration(record, view.now) {
                                                " " small { (took) }
                                            }
                                        }
                                    }
                                }
                                @for record in target.lifecycle_events.iter().filter(|e| e.status == EventStatus::Failed) {
                                    @if let Some(diagnostics) = &record.diagnostics {
                                        details.failure open {
                                            summary {
                                                (record.lifecycle_event_name) " failed: "
                                                (if diagnostics.message.is_empty() { "no message" } else { diagnostics.message.as_str() })
                                                @if !diagnostics.script_name.is_empty() { " [" (diagnostics.script_name) "]" }
                                            }
                                            @if !diagnostics.log_tail.is_empty() {
                                                pre.log { (diagnostics.log_tail) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn actions(view: &DeploymentView, token: &str) -> Markup {
    let info = view.info;
    let path = deployment_href(&info.deployment_id);
    let stage = info
        .blue_green_progress
        .as_ref()
        .map(|progress| progress.stage);
    html! {
        @if !info.is_over() {
            div.actions {
                @if stage == Some(Stage::Ready) {
                    (action(&format!("{path}/continue"), token, "Reroute traffic now", &[], ""))
                }
                @if stage == Some(Stage::TerminationWait) {
                    (action(&format!("{path}/continue"), token, "Terminate the original fleet now", &[("terminate", "true")], ""))
                }
                (action(&format!("{path}/stop"), token, "Stop", &[], ""))
                (action(&format!("{path}/stop"), token, "Stop and roll back", &[("rollback", "true")], "danger"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn what_hosts_report_reaches_the_page_as_text() {
        let info = crate::deploy::tests::typed(json!({"status": "Failed"}));
        let target: InstanceTarget = serde_json::from_value(json!({
            "deploymentId": info.deployment_id,
            "targetId": "i-0<script>",
            "targetArn": "arn",
            "status": "Failed",
            "instanceLabel": "Blue",
            "lifecycleEvents": [{
                "lifecycleEventName": "ValidateService",
                "status": "Failed",
                "startTime": 1.0,
                "endTime": 3.5,
                "diagnostics": {
                    "errorCode": "ScriptFailed",
                    "scriptName": "check.sh",
                    "message": "exit 1 <b>",
                    "logTail": "curl: <img src=x onerror=alert(1)>\nnot healthy"
                }
            }]
        }))
        .unwrap();
        let progress = ProgressLine {
            text: "1 of 1 hosts done".into(),
            changed: true,
            ended: 1,
            total: 1,
        };
        let view = DeploymentView {
            info: &info,
            targets: std::slice::from_ref(&target),
            progress: &progress,
            alarms: &["high-latency".into()],
            now: 10.0,
        };
        let page = deployment(&view, "t0ken").into_string();
        assert!(!page.contains("<img src=x"), "{page}");
        assert!(!page.contains("i-0<script>"));
        assert!(page.contains("curl: &lt;img src=x onerror=alert(1)&gt;\nnot healthy"));
        assert!(page.contains("ValidateService failed: exit 1 &lt;b&gt; [check.sh]"));
        assert!(
            page.contains("✗</span> Failed"),
            "status in words, not colour alone"
        );
        assert!(page.contains("2.5 s"));
        assert!(page.contains("high-latency"));
    }

    #[test]
    fn names_in_links_are_percent_encoded() {
        assert_eq!(deployment_href("d-ABC123"), "/deployments/d-ABC123");
        assert_eq!(segment("my app/x.."), "my%20app%2Fx%2E%2E");
        let filters = Filters {
            application: "a&b".into(),
            status: "Failed".into(),
            ..Filters::default()
        };
        assert_eq!(
            filters.query("tok en"),
            "application=a%26b&group=&status=Failed&since=&next=tok+en"
        );
    }
}
