//! `gantry console`: the deployments in a browser, served from a loopback port.
//!
//! It reads and acts through the CLI's own [`Gantry`] client, so it sees what `gantry`
//! sees, with the user's own credentials, and needs nothing new in AWS. Pages are
//! rendered on the server ([`pages`]); a running deployment's page takes its changes
//! from a server-sent event stream ([`live`]). [`guard`] says who may ask.

mod guard;
mod live;
mod pages;

use crate::client::Gantry;
use crate::deploy::{Progress, targets, unix_seconds};
use gantry_api::application::ListApplicationsOutput;
use gantry_api::deployment::{DeploymentInfo, ListDeploymentsOutput, RollbackOutput};
use gantry_api::group::{GetDeploymentGroupOutput, ListDeploymentGroupsOutput};
use gantry_api::instance::ListOnPremisesInstancesOutput;
use gantry_api::revision::ListApplicationRevisionsOutput;
use gantry_core::wire::RevisionLocation;
use guard::{Guard, Refusal, TOKEN_FIELD};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};
use maud::Markup;
use pages::{DeploymentView, Filters};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

/// A form is a few fields: nothing larger is read.
const MAX_FORM_BYTES: usize = 16 * 1024;

type Body = BoxBody<Bytes, Infallible>;

struct Console {
    gantry: Gantry,
    guard: Guard,
}

/// Serves until interrupted (SIGINT or SIGTERM).
pub async fn run(gantry: Gantry, port: u16) -> anyhow::Result<()> {
    let listener = crate::serve::listen(port).await?;
    let address = listener.local_addr()?;
    let token = Guard::random_token()?;
    // Scripts and tests read this line for the URL; it is the only way in.
    println!("gantry console: open http://{address}/login?token={token}");
    use std::io::Write;
    std::io::stdout().flush()?;
    let console = Arc::new(Console {
        gantry,
        guard: Guard::new(address.port(), token),
    });
    crate::serve::serve(listener, move |request| {
        let console = Arc::clone(&console);
        async move { secured(handle(console, request).await) }
    })
    .await
}

/// Headers every answer carries: nothing of another origin runs or frames a page, and
/// nothing is cached or sent as a referrer to another origin. (`no-referrer` would
/// also make Chromium send `Origin: null` with the console's own forms.)
fn secured(mut response: Response<Body>) -> Response<Body> {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
    ] {
        headers.insert(name, value.parse().expect("a valid header value"));
    }
    headers.insert(
        CACHE_CONTROL,
        "no-store".parse().expect("a valid header value"),
    );
    response
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed()
}

fn page(status: StatusCode, markup: Markup) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/html; charset=utf-8")
        .body(full(markup.into_string()))
        .expect("a valid response")
}

fn refused(refusal: Refusal) -> Response<Body> {
    page(
        StatusCode::FORBIDDEN,
        pages::problem(
            "Not allowed",
            &format!("gantry console refused this request: {}", refusal.0),
        ),
    )
}

/// After a change: the page to look at (POST, then GET).
fn see_other(location: &str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(LOCATION, location)
        .body(full(""))
        .expect("a valid response")
}

fn failed(title: &str, error: anyhow::Error) -> Response<Body> {
    page(
        StatusCode::BAD_GATEWAY,
        pages::problem(title, &format!("{error:#}")),
    )
}

fn asset(content_type: &str, body: &'static str) -> Response<Body> {
    Response::builder()
        .header(CONTENT_TYPE, content_type)
        .body(full(body))
        .expect("a valid response")
}

/// The path's segments, percent-decoded.
fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            percent_encoding::percent_decode_str(segment)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

fn query(request: &Request<Incoming>) -> BTreeMap<String, String> {
    form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

async fn handle(console: Arc<Console>, request: Request<Incoming>) -> Response<Body> {
    let guard = &console.guard;
    if let Err(refusal) = guard.check_host(request.headers()) {
        return refused(refusal);
    }
    let path = segments(request.uri().path());
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    match (request.method().clone(), path.as_slice()) {
        (Method::GET, ["console.css"]) => asset("text/css", include_str!("console.css")),
        (Method::GET, ["console.js"]) => asset("text/javascript", include_str!("console.js")),
        (Method::GET, ["login"]) => {
            let token = query(&request).remove("token");
            match guard.check_login(token.as_deref()) {
                Ok(()) => {
                    let mut response = see_other("/");
                    response.headers_mut().insert(
                        SET_COOKIE,
                        format!(
                            "{}={}; HttpOnly; SameSite=Strict; Path=/",
                            guard.cookie_name(),
                            guard.token()
                        )
                        .parse()
                        .expect("a valid cookie"),
                    );
                    response
                }
                Err(refusal) => refused(refusal),
            }
        }
        (Method::GET, _) => {
            if let Err(refusal) = guard.check_read(request.headers()) {
                return refused(refusal);
            }
            read(&console, &request, &path).await
        }
        (Method::POST, _) => {
            let headers = request.headers().clone();
            let form: BTreeMap<String, String> =
                match Limited::new(request.into_body(), MAX_FORM_BYTES)
                    .collect()
                    .await
                {
                    Ok(body) => form_urlencoded::parse(&body.to_bytes())
                        .into_owned()
                        .collect(),
                    Err(_) => BTreeMap::new(),
                };
            if let Err(refusal) =
                guard.check_change(&headers, form.get(TOKEN_FIELD).map(String::as_str))
            {
                return refused(refusal);
            }
            change(&console.gantry, &path, &form).await
        }
        _ => page(
            StatusCode::METHOD_NOT_ALLOWED,
            pages::problem("Not here", "the console answers GET and POST only"),
        ),
    }
}

async fn read(
    console: &Arc<Console>,
    request: &Request<Incoming>,
    path: &[&str],
) -> Response<Body> {
    let gantry = &console.gantry;
    let token = console.guard.token();
    match path {
        [] => match applications(gantry).await {
            Ok(names) => page(StatusCode::OK, pages::applications(&names)),
            Err(error) => failed("Applications", error),
        },
        ["applications", name] => match application(gantry, name).await {
            Ok((groups, revisions)) => page(
                StatusCode::OK,
                pages::application(name, &groups, &revisions, token),
            ),
            Err(error) => failed(name, error),
        },
        ["deployments"] => {
            let mut query = query(request);
            let filters = Filters {
                application: query.remove("application").unwrap_or_default(),
                group: query.remove("group").unwrap_or_default(),
                status: query.remove("status").unwrap_or_default(),
                since: query.remove("since").unwrap_or_default(),
            };
            let next = query.remove("next").filter(|next| !next.is_empty());
            match deployments(gantry, &filters, next).await {
                Ok((rows, next)) => page(
                    StatusCode::OK,
                    pages::deployments(&filters, &rows, next.as_deref()),
                ),
                Err(error) => failed("Deployments", error),
            }
        }
        ["deployments", id] => {
            match DeploymentPoll::read(gantry, id, &mut Progress::default()).await {
                Ok(poll) => {
                    let alarms = alarms(gantry, &poll.info).await;
                    page(
                        StatusCode::OK,
                        pages::deployment(&poll.view(&alarms), token),
                    )
                }
                Err(error) => failed(id, error),
            }
        }
        ["deployments", id, "live"] => live::stream(console, id).await,
        ["instances"] => match instances(gantry).await {
            Ok(infos) => page(StatusCode::OK, pages::instances(&infos)),
            Err(error) => failed("On-premises instances", error),
        },
        _ => page(
            StatusCode::NOT_FOUND,
            pages::problem("Not found", "the console has no such page"),
        ),
    }
}

/// One read of a deployment and its hosts, with the progress line they make.
pub struct DeploymentPoll {
    info: DeploymentInfo,
    targets: Vec<gantry_api::target::InstanceTarget>,
    line: crate::deploy::ProgressLine,
    now: f64,
}

impl DeploymentPoll {
    async fn read(gantry: &Gantry, id: &str, progress: &mut Progress) -> anyhow::Result<Self> {
        let info = gantry.deployment(id).await?;
        let targets = targets(gantry, id).await?;
        let now = unix_seconds();
        let line = progress.observe(now, &info, &targets);
        Ok(Self {
            info,
            targets,
            line,
            now,
        })
    }

    fn view<'a>(&'a self, alarms: &'a [String]) -> DeploymentView<'a> {
        DeploymentView {
            info: &self.info,
            targets: &self.targets,
            progress: &self.line,
            alarms,
            now: self.now,
        }
    }
}

/// The alarms a deployment watches: its own override, else its group's.
async fn alarms(gantry: &Gantry, info: &DeploymentInfo) -> Vec<String> {
    let configuration = match &info.override_alarm_configuration {
        Some(own) => Some(own.clone()),
        None => gantry
            .call::<GetDeploymentGroupOutput>(
                "GetDeploymentGroup",
                json!({"applicationName": info.application_name, "deploymentGroupName": info.deployment_group_name}),
            )
            .await
            .ok()
            .map(|(_, group)| group.deployment_group_info.alarm_configuration),
    };
    configuration
        .filter(|configuration| configuration.enabled)
        .map(|configuration| {
            configuration
                .alarms
                .into_iter()
                .map(|alarm| alarm.name)
                .collect()
        })
        .unwrap_or_default()
}

async fn applications(gantry: &Gantry) -> anyhow::Result<Vec<String>> {
    let listed: ListApplicationsOutput = gantry.list_all("ListApplications", json!({})).await?;
    Ok(listed.applications)
}

async fn application(
    gantry: &Gantry,
    name: &str,
) -> anyhow::Result<(
    Vec<gantry_api::group::DeploymentGroupInfo>,
    Vec<RevisionLocation>,
)> {
    let listed: ListDeploymentGroupsOutput = gantry
        .list_all("ListDeploymentGroups", json!({"applicationName": name}))
        .await?;
    let mut groups = Vec::with_capacity(listed.deployment_groups.len());
    for group in &listed.deployment_groups {
        let (_, got): (_, GetDeploymentGroupOutput) = gantry
            .call(
                "GetDeploymentGroup",
                json!({"applicationName": name, "deploymentGroupName": group}),
            )
            .await?;
        groups.push(got.deployment_group_info);
    }
    // The newest first, one page: the ones people deploy.
    let (_, revisions): (_, ListApplicationRevisionsOutput) = gantry
        .call("ListApplicationRevisions", json!({"applicationName": name}))
        .await?;
    Ok((groups, revisions.revisions))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeploymentsInfo {
    deployments_info: Vec<DeploymentInfo>,
}

/// One page of deployments, newest first, and the token of the next.
async fn deployments(
    gantry: &Gantry,
    filters: &Filters,
    next: Option<String>,
) -> anyhow::Result<(Vec<DeploymentInfo>, Option<String>)> {
    let mut input = json!({});
    if !filters.application.is_empty() {
        input["applicationName"] = json!(filters.application);
        if !filters.group.is_empty() {
            input["deploymentGroupName"] = json!(filters.group);
        }
    }
    if !filters.status.is_empty() {
        input["includeOnlyStatuses"] = json!([filters.status]);
    }
    if let Some((_, _, seconds)) = pages::SINCE
        .iter()
        .find(|(name, _, seconds)| *name == filters.since && *seconds > 0.0)
    {
        input["createTimeRange"] = json!({"start": unix_seconds() - seconds});
    }
    if let Some(next) = next {
        input["nextToken"] = json!(next);
    }
    let (_, listed): (_, ListDeploymentsOutput) = gantry.call("ListDeployments", input).await?;
    let mut rows = Vec::with_capacity(listed.deployments.len());
    // BatchGetDeployments takes 25 at a time, as CodeDeploy's does.
    for chunk in listed.deployments.chunks(25) {
        let (_, got): (_, DeploymentsInfo) = gantry
            .call("BatchGetDeployments", json!({"deploymentIds": chunk}))
            .await?;
        rows.extend(got.deployments_info);
    }
    rows.sort_by(|a, b| b.create_time.total_cmp(&a.create_time));
    Ok((rows, listed.next_token))
}

async fn instances(gantry: &Gantry) -> anyhow::Result<Vec<Value>> {
    let listed: ListOnPremisesInstancesOutput = gantry
        .list_all("ListOnPremisesInstances", json!({}))
        .await?;
    let mut infos = Vec::with_capacity(listed.instance_names.len());
    for chunk in listed.instance_names.chunks(25) {
        let got = gantry
            .api(
                "BatchGetOnPremisesInstances",
                json!({"instanceNames": chunk}),
            )
            .await?;
        infos.extend(got["instanceInfos"].as_array().cloned().unwrap_or_default());
    }
    Ok(infos)
}

/// A change the guard let through: carried out, then the page to look at.
async fn change(gantry: &Gantry, path: &[&str], form: &BTreeMap<String, String>) -> Response<Body> {
    let yes = |field: &str| form.get(field).is_some_and(|value| value == "true");
    let outcome: anyhow::Result<String> = async {
        match path {
            ["deployments", id, "stop"] => {
                gantry
                    .api(
                        "StopDeployment",
                        json!({"deploymentId": id, "autoRollbackEnabled": yes("rollback")}),
                    )
                    .await?;
                Ok(pages::deployment_href(id))
            }
            ["deployments", id, "continue"] => {
                let wait = if yes("terminate") { "TERMINATION_WAIT" } else { "READY_WAIT" };
                gantry
                    .api(
                        "ContinueDeployment",
                        json!({"deploymentId": id, "deploymentWaitType": wait}),
                    )
                    .await?;
                Ok(pages::deployment_href(id))
            }
            ["applications", app, "groups", group, "rollback"] => {
                let (_, started): (_, RollbackOutput) = gantry
                    .invoke_typed(
                        "rollback",
                        &json!({"applicationName": app, "deploymentGroupName": group}),
                    )
                    .await?;
                Ok(pages::deployment_href(&started.deployment_id))
            }
            ["applications", app, "groups", group, "deploy"] => {
                let revision: RevisionLocation = form
                    .get("revision")
                    .and_then(|revision| serde_json::from_str(revision).ok())
                    .ok_or_else(|| anyhow::anyhow!("revision: pick one of the application's registered revisions"))?;
                let created = gantry
                    .invoke(
                        "create-deployment",
                        &json!({"applicationName": app, "deploymentGroupName": group, "revision": revision}),
                    )
                    .await?;
                let id = created["deploymentId"]
                    .as_str()
                    .ok_or_else(|| anyhow::anyhow!("create-deployment answered without a deploymentId: {created}"))?;
                Ok(pages::deployment_href(id))
            }
            _ => Err(anyhow::anyhow!("the console has no such action")),
        }
    }
    .await;
    match outcome {
        Ok(location) => see_other(&location),
        Err(error) => failed("The action failed", error),
    }
}
