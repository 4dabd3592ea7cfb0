//! api: the rest of CodeDeploy's API for this platform, one area per function below
//! (applications, deployment groups, deployment configs, on-premises instances,
//! revisions, deployments and their targets).
//!
//! The function takes `{"operation": "<CodeDeploy operation name>", "input": {<its
//! input>}}` and answers with that operation's output JSON. Errors are
//! `{"errorType": "<CodeDeploy exception>", "errorMessage": "..."}`.

use crate::adapters::HookKind;
use crate::control::ControlPlane;
use crate::effects;
use crate::error::{ApiError, Exception, parse_input};
use crate::group_hooks::{hook_kinds, put_hooks, remove_hooks};
use crate::model::is_blank;
use crate::model::{
    ApplicationInfo, AutoRollbackConfiguration, BLUE_GREEN, DeploymentConfigInfo,
    DeploymentGroupSettings, DeploymentSpec, DeploymentStyle, IN_PLACE, LoadBalancerInfo,
    OnPremisesInstance, RevisionRecord, TRIGGER_EVENTS, Tag, TargetChanges, TargetGroupInfo,
    TriggerConfig, WITH_TRAFFIC_CONTROL, WITHOUT_TRAFFIC_CONTROL, now_millis, seconds,
    serialized_name,
};
use crate::store::{DeploymentRecord, StoreError, keys};

/// Gantry's bound on a trigger's name (CodeDeploy documents none): it is stored with the
/// group and named in every notification and failure record.
const TRIGGER_NAME_MAX_CHARS: usize = 100;
/// CodeDeploy's quota of triggers per deployment group.
const MAX_TRIGGERS: usize = 10;
use gantry_core::config::{DeploymentConfig, MinimumHealthyHosts, ZonalConfig};
use gantry_core::deployment::{Input, Millis, TargetState, WaitType};
use gantry_core::identity::IamIdentity;
use gantry_core::planner::Target;
use gantry_core::wire::RevisionLocation;
use serde::Deserialize;
use serde_json::{Value, json};

mod rename;
mod tags;

fn name_field(input: &Value, field: &str, exception: Exception) -> Result<String, ApiError> {
    match input.get(field).and_then(Value::as_str) {
        Some(value) if !value.is_empty() => Ok(value.to_owned()),
        _ => Err(ApiError::new(exception, format!("{field}: is required"))),
    }
}

fn application_field(input: &Value) -> Result<String, ApiError> {
    name_field(input, "applicationName", Exception::ApplicationNameRequired)
}

fn group_field(input: &Value) -> Result<String, ApiError> {
    name_field(
        input,
        "deploymentGroupName",
        Exception::DeploymentGroupNameRequired,
    )
}

fn names_field(input: &Value, field: &str) -> Result<Vec<String>, ApiError> {
    match input.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(value) => serde_json::from_value(value.clone())
            .map_err(|_| ApiError::invalid_input(format!("{field}: must be a list of strings"))),
    }
}

/// Items per page of a List operation.
const PAGE_SIZE: usize = 100;

/// One page of `items`, which are in their listing order: those after the item that
/// `nextToken` names (the key of the last item of the page before), and the token for
/// the next page if there is one. Tokens name an item, not a position, so what is added
/// before it between two calls is neither missed nor repeated.
fn page<T>(
    items: Vec<T>,
    input: &Value,
    key: impl Fn(&T) -> String,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let start = page_start(&items, input, &key)?;
    let mut rest: Vec<T> = items.into_iter().skip(start).collect();
    let next = (rest.len() > PAGE_SIZE).then(|| encode_token(&key(&rest[PAGE_SIZE - 1])));
    rest.truncate(PAGE_SIZE);
    Ok((rest, next))
}

/// Where the page `nextToken` asks for starts in `items`.
fn page_start<T>(
    items: &[T],
    input: &Value,
    key: impl Fn(&T) -> String,
) -> Result<usize, ApiError> {
    match input.get("nextToken").and_then(Value::as_str) {
        None | Some("") => Ok(0),
        Some(token) => {
            let after = decode_token(token)?;
            items
                .iter()
                .position(|item| key(item) == after)
                .map(|index| index + 1)
                .ok_or_else(invalid_token)
        }
    }
}

fn with_next_token(mut output: Value, next: Option<String>) -> Value {
    if let Some(token) = next {
        output["nextToken"] = json!(token);
    }
    output
}

fn encode_token(key: &str) -> String {
    key.bytes().map(|byte| format!("{byte:02x}")).collect()
}

fn decode_token(token: &str) -> Result<String, ApiError> {
    let bytes: Option<Vec<u8>> = token
        .len()
        .is_multiple_of(2)
        .then(|| {
            (0..token.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
                .collect()
        })
        .flatten();
    bytes
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(invalid_token)
}

fn invalid_token() -> ApiError {
    ApiError::new(
        Exception::InvalidNextToken,
        "nextToken: is not a token this operation returned; pass the nextToken of the previous page, or none for the first",
    )
}

/// The names of a BatchGet operation, at most `limit` of them (CodeDeploy's limits).
fn batch_names(input: &Value, field: &str, limit: usize) -> Result<Vec<String>, ApiError> {
    let names = names_field(input, field)?;
    if names.len() > limit {
        return Err(ApiError::new(
            Exception::BatchLimitExceeded,
            format!("{field}: at most {limit} per call, found {}", names.len()),
        ));
    }
    Ok(names)
}

/// ListDeployments: a group's deployments, or an application's, or all, newest first,
/// optionally only those with the given statuses and created within a time range
/// (`createTimeRange` `{start, end}`, epoch seconds), a page at a time.
async fn list_deployments(control: &ControlPlane, input: &Value) -> Result<Value, ApiError> {
    let application = input
        .get("applicationName")
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty());
    let group = input
        .get("deploymentGroupName")
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty());
    let groups: Vec<(String, String)> = match (application, group) {
        (Some(application), Some(group)) => {
            control.load_group(application, group).await?;
            vec![(application.to_owned(), group.to_owned())]
        }
        (None, Some(_)) => {
            return Err(ApiError::new(
                Exception::ApplicationNameRequired,
                "applicationName: is required when deploymentGroupName is given",
            ));
        }
        (Some(application), None) => {
            get_application(control, application).await?;
            application_groups(control, application).await?
        }
        (None, None) => all_groups(control)
            .await?
            .into_iter()
            .map(|group| (group.application_name, group.deployment_group_name))
            .collect(),
    };
    let range = input.get("createTimeRange");
    let bound = |name: &str| -> Result<Option<Millis>, ApiError> {
        match range.and_then(|r| r.get(name)) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_f64()
                .filter(|secs| *secs >= 0.0)
                .map(|secs| Some((secs * 1000.0).round() as Millis))
                .ok_or_else(|| {
                    ApiError::new(
                        Exception::InvalidTimeRange,
                        format!("createTimeRange.{name}: must be a time in epoch seconds"),
                    )
                }),
        }
    };
    let from = bound("start")?.unwrap_or(0);
    let to = bound("end")?.unwrap_or(Millis::MAX / 2);
    if from > to {
        return Err(ApiError::new(
            Exception::InvalidTimeRange,
            "createTimeRange: start is after end",
        ));
    }
    let mut deployments: Vec<(String, Millis)> = Vec::new();
    for (application, group) in &groups {
        deployments.extend(
            control
                .store
                .group_deployments(application, group, from..=to)
                .await?,
        );
    }
    deployments.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    let statuses = names_field(input, "includeOnlyStatuses")?;
    for status in &statuses {
        if !DEPLOYMENT_STATUSES.contains(&status.as_str()) {
            return Err(ApiError::new(
                Exception::InvalidDeploymentStatus,
                format!(
                    "includeOnlyStatuses: {status:?} is not one of {}",
                    DEPLOYMENT_STATUSES.join(", ")
                ),
            ));
        }
    }
    let ids: Vec<String> = deployments.into_iter().map(|(id, _)| id).collect();
    if statuses.is_empty() {
        let (ids, next) = page(ids, input, String::clone)?;
        return Ok(with_next_token(json!({"deployments": ids}), next));
    }
    // Read statuses only as far as one page needs.
    let start = page_start(&ids, input, String::clone)?;
    let mut kept: Vec<String> = Vec::new();
    let mut next = None;
    for id in &ids[start..] {
        if kept.len() == PAGE_SIZE {
            next = kept.last().map(|last| encode_token(last));
            break;
        }
        let record = load(control, id).await?;
        if statuses.contains(&serialized_name(&record.state.status)) {
            kept.push(id.clone());
        }
    }
    Ok(with_next_token(json!({"deployments": kept}), next))
}

/// CodeDeploy's deployment statuses a ListDeployments filter may name.
const DEPLOYMENT_STATUSES: [&str; 8] = [
    "Created",
    "Queued",
    "InProgress",
    "Baking",
    "Succeeded",
    "Failed",
    "Stopped",
    "Ready",
];

/// Every (application, group) pair of an application.
async fn application_groups(
    control: &ControlPlane,
    application: &str,
) -> Result<Vec<(String, String)>, ApiError> {
    let groups: Vec<DeploymentGroupSettings> =
        control.store.list(&keys::groups(application)).await?;
    Ok(groups
        .into_iter()
        .map(|group| (application.to_owned(), group.deployment_group_name))
        .collect())
}

/// Every deployment group of every application.
async fn all_groups(control: &ControlPlane) -> Result<Vec<DeploymentGroupSettings>, ApiError> {
    let applications: Vec<ApplicationInfo> = control.store.list(keys::APPLICATIONS).await?;
    let mut groups = Vec::new();
    for application in applications {
        groups.extend(
            control
                .store
                .list::<DeploymentGroupSettings>(&keys::groups(&application.application_name))
                .await?,
        );
    }
    Ok(groups)
}

fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::invalid_input(format!(
            "{field}: must be 1 to 100 characters, found {}",
            name.len()
        )));
    }
    // `#` joins names in storage keys (`app#group` lists a group's deployments), and `/`
    // splits a group's ARN: either would let one name stand for another.
    if let Some(bad) = name
        .chars()
        .find(|&c| c == '#' || c == '/' || c.is_control())
    {
        return Err(ApiError::invalid_input(format!(
            "{field}: {name:?} contains {bad:?}; names may use any characters but '#', '/' and control characters"
        )));
    }
    Ok(())
}

/// Instance names become SQS queue names (`<prefix><name>`), so they are limited to
/// what SQS allows.
fn check_instance_name(name: &str) -> Result<(), ApiError> {
    if !gantry_core::wire::is_instance_id(name) {
        return Err(ApiError::new(
            Exception::InvalidInstanceName,
            format!(
                "instanceName: {name:?} must be 1 to 60 characters of A-Z, a-z, 0-9, - and _ (it names the host's command queue)"
            ),
        ));
    }
    // It would share an EC2 instance's command queue and reports.
    if looks_like_ec2_id(name) {
        return Err(ApiError::new(
            Exception::InvalidInstanceName,
            format!(
                "instanceName: {name:?} has the form of an EC2 instance id; name on-premises instances otherwise"
            ),
        ));
    }
    Ok(())
}

/// `i-` and 8 or 17 hexadecimal digits.
fn looks_like_ec2_id(name: &str) -> bool {
    name.strip_prefix("i-").is_some_and(|digits| {
        matches!(digits.len(), 8 | 17) && digits.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// Runs one CodeDeploy operation. Each area is its own function, boxed: one async match
/// over every operation kept all their locals in one stack frame (700 KB in debug builds,
/// enough to overflow a 2 MB thread on a deep path).
pub async fn operation(
    control: &ControlPlane,
    name: &str,
    input: Value,
) -> Result<Value, ApiError> {
    match name {
        "CreateApplication"
        | "GetApplication"
        | "BatchGetApplications"
        | "ListApplications"
        | "UpdateApplication"
        | "DeleteApplication" => Box::pin(applications(control, name, input)).await,
        "CreateDeploymentGroup"
        | "GetDeploymentGroup"
        | "BatchGetDeploymentGroups"
        | "ListDeploymentGroups"
        | "UpdateDeploymentGroup"
        | "DeleteDeploymentGroup" => Box::pin(deployment_groups(control, name, input)).await,
        "CreateDeploymentConfig"
        | "GetDeploymentConfig"
        | "ListDeploymentConfigs"
        | "DeleteDeploymentConfig" => Box::pin(deployment_configs(control, name, input)).await,
        "RegisterOnPremisesInstance"
        | "DeregisterOnPremisesInstance"
        | "AddTagsToOnPremisesInstances"
        | "RemoveTagsFromOnPremisesInstances"
        | "GetOnPremisesInstance"
        | "BatchGetOnPremisesInstances"
        | "ListOnPremisesInstances" => Box::pin(on_premises_instances(control, name, input)).await,
        "RegisterApplicationRevision"
        | "GetApplicationRevision"
        | "BatchGetApplicationRevisions"
        | "ListApplicationRevisions" => Box::pin(revisions(control, name, input)).await,
        "CreateDeployment"
        | "GetDeployment"
        | "BatchGetDeployments"
        | "ListDeployments"
        | "ListDeploymentTargets"
        | "ListDeploymentInstances"
        | "BatchGetDeploymentTargets"
        | "GetDeploymentTarget"
        | "GetDeploymentInstance"
        | "BatchGetDeploymentInstances"
        | "StopDeployment"
        | "ContinueDeployment"
        | "SkipWaitTimeForInstanceTermination" => Box::pin(deployments(control, name, input)).await,
        "TagResource" | "UntagResource" | "ListTagsForResource" => {
            Box::pin(tags::operation(control, name, input)).await
        }
        other => Err(unknown_operation(other)),
    }
}

fn unknown_operation(name: &str) -> ApiError {
    ApiError::new(
        Exception::InvalidOperation,
        format!("operation: {name:?} is not an operation Gantry serves"),
    )
}

/// Applications: Create, Get, BatchGet, List, Update (rename), Delete.
async fn applications(control: &ControlPlane, name: &str, input: Value) -> Result<Value, ApiError> {
    let store = &control.store;
    match name {
        "CreateApplication" => {
            let application = application_field(&input)?;
            check_name("applicationName", &application)?;
            if let Some(platform) = input.get("computePlatform").and_then(Value::as_str)
                && platform != "Server"
            {
                return Err(ApiError::new(
                    Exception::InvalidComputePlatform,
                    format!(
                        "computePlatform: {platform:?}; Gantry deploys to the Server platform (EC2 and on-premises)"
                    ),
                ));
            }
            let info = ApplicationInfo {
                application_id: uuid::Uuid::new_v4().to_string(),
                application_name: application.clone(),
                create_time: seconds(now_millis()),
                linked_to_git_hub: false,
                compute_platform: "Server".into(),
            };
            let tags = tags::creation_tags(&input, "tags")?;
            store
                .put_new(
                    keys::APPLICATIONS,
                    &application,
                    &info,
                    &crate::store::DynamoStore::tag_attributes(&tags),
                )
                .await
                .map_err(|error| match error {
                    StoreError::Conflict(_) => already_exists("applicationName", &application),
                    other => other.into(),
                })?;
            Ok(json!({"applicationId": info.application_id}))
        }
        "GetApplication" => {
            let application = application_field(&input)?;
            let info = get_application(control, &application).await?;
            Ok(json!({"application": info}))
        }
        "BatchGetApplications" => {
            let mut infos = Vec::new();
            for application in batch_names(&input, "applicationNames", 100)? {
                infos.push(get_application(control, &application).await?);
            }
            Ok(json!({"applicationsInfo": infos}))
        }
        "ListApplications" => {
            let applications: Vec<ApplicationInfo> = store.list(keys::APPLICATIONS).await?;
            let names: Vec<String> = applications
                .into_iter()
                .map(|a| a.application_name)
                .collect();
            let (names, next) = page(names, &input, String::clone)?;
            Ok(with_next_token(json!({"applications": names}), next))
        }
        "UpdateApplication" => {
            let application = application_field(&input)?;
            get_application(control, &application).await?;
            match input.get("newApplicationName").and_then(Value::as_str) {
                None | Some("") => {}
                Some(new_name) if new_name == application => {}
                // Boxed: the rename's steps make a large future.
                Some(new_name) => Box::pin(rename::rename(control, &application, new_name)).await?,
            }
            Ok(json!({}))
        }
        "DeleteApplication" => {
            let application = application_field(&input)?;
            let groups: Vec<DeploymentGroupSettings> =
                store.list(&keys::groups(&application)).await?;
            for group in &groups {
                store
                    .delete(
                        &keys::groups(&application),
                        &group.deployment_group_name,
                        Some("attribute_not_exists(activeDeploymentId)"),
                    )
                    .await
                    .map_err(|_| {
                        ApiError::new(
                            Exception::DeploymentAlreadyStarted,
                            format!(
                                "deployment group {} has an active deployment; stop it first",
                                group.deployment_group_name
                            ),
                        )
                    })?;
                remove_hooks(
                    control,
                    &group.deployment_group_id,
                    &HookKind::ALL,
                    &group.targets.auto_scaling_groups,
                )
                .await;
            }
            store.delete(keys::APPLICATIONS, &application, None).await?;
            Ok(json!({}))
        }
        other => Err(unknown_operation(other)),
    }
}

fn already_exists(field: &str, application: &str) -> ApiError {
    ApiError::new(
        Exception::ApplicationAlreadyExists,
        format!("{field}: an application named {application:?} already exists"),
    )
}

/// Deployment groups.
async fn deployment_groups(
    control: &ControlPlane,
    name: &str,
    input: Value,
) -> Result<Value, ApiError> {
    let store = &control.store;
    match name {
        "CreateDeploymentGroup" => {
            let request: GroupInput = parse_input(name, input)?;
            let application = request.application_name.clone();
            get_application(control, &application).await?;
            let group = request.deployment_group_name.clone().unwrap_or_default();
            if group.is_empty() {
                return Err(ApiError::new(
                    Exception::DeploymentGroupNameRequired,
                    "deploymentGroupName: is required",
                ));
            }
            check_name("deploymentGroupName", &group)?;
            let tags = tags::creation_tags(&json!({"tags": request.tags}), "tags")?;
            let settings = request.settings(control, None).await?;
            // Hooks first: a group whose launches would go unanswered is not created.
            let auto_scaling_groups = &settings.targets.auto_scaling_groups;
            let kinds = hook_kinds(&settings);
            let id = &settings.deployment_group_id;
            put_hooks(
                control,
                &application,
                &group,
                id,
                &kinds,
                auto_scaling_groups,
            )
            .await?;
            let created = store
                .create_tagged_group(&application, &group, &settings, &tags)
                .await;
            if created.is_err() {
                remove_hooks(control, id, &kinds, auto_scaling_groups).await;
            }
            created.map_err(|error| match error {
                    StoreError::Conflict(_) => ApiError::new(
                        Exception::DeploymentGroupAlreadyExists,
                        format!("deploymentGroupName: application {application:?} already has a group named {group:?}"),
                    ),
                    other => other.into(),
                })?;
            Ok(json!({"deploymentGroupId": settings.deployment_group_id}))
        }
        "GetDeploymentGroup" => {
            let application = application_field(&input)?;
            let group = group_field(&input)?;
            Ok(json!({"deploymentGroupInfo": group_info(control, &application, &group).await?}))
        }
        "BatchGetDeploymentGroups" => {
            let application = application_field(&input)?;
            let mut infos = Vec::new();
            for group in batch_names(&input, "deploymentGroupNames", 100)? {
                infos.push(group_info(control, &application, &group).await?);
            }
            Ok(json!({"deploymentGroupsInfo": infos}))
        }
        "ListDeploymentGroups" => {
            let application = application_field(&input)?;
            get_application(control, &application).await?;
            let groups: Vec<DeploymentGroupSettings> =
                store.list(&keys::groups(&application)).await?;
            let names: Vec<String> = groups
                .into_iter()
                .map(|g| g.deployment_group_name)
                .collect();
            let (names, next) = page(names, &input, String::clone)?;
            Ok(with_next_token(
                json!({"applicationName": application, "deploymentGroups": names}),
                next,
            ))
        }
        "UpdateDeploymentGroup" => {
            let mut request: GroupInput = parse_input(name, input)?;
            let application = request.application_name.clone();
            let current = request
                .current_deployment_group_name
                .clone()
                .unwrap_or_default();
            if request
                .new_deployment_group_name
                .as_deref()
                .is_some_and(|new| !new.is_empty() && new != current)
            {
                return Err(ApiError::invalid_input(
                    "newDeploymentGroupName: renaming a deployment group is not supported; create a new group instead",
                ));
            }
            let group = control.load_group(&application, &current).await?;
            request.deployment_group_name = Some(current.clone());
            let settings = request
                .settings(control, Some(&group.settings.value))
                .await?;
            // Hooks change only on the Auto Scaling groups added or removed: put before
            // the group lists them, removed once it no longer does.
            let before = &group.settings.value.targets.auto_scaling_groups;
            let after = &settings.targets.auto_scaling_groups;
            let added: Vec<String> = after
                .iter()
                .filter(|name| !before.contains(name))
                .cloned()
                .collect();
            let removed: Vec<String> = before
                .iter()
                .filter(|name| !after.contains(name))
                .cloned()
                .collect();
            let kept: Vec<String> = after
                .iter()
                .filter(|name| before.contains(name))
                .cloned()
                .collect();
            // terminationHookEnabled turned on puts the termination hook on the groups
            // kept too; turned off, it comes off them.
            let was = group.settings.value.termination_hook_enabled;
            let now = settings.termination_hook_enabled;
            let id = &settings.deployment_group_id;
            let kinds = hook_kinds(&settings);
            let termination = [HookKind::Termination];
            put_hooks(control, &application, &current, id, &kinds, &added).await?;
            if now
                && !was
                && let Err(error) =
                    put_hooks(control, &application, &current, id, &termination, &kept).await
            {
                remove_hooks(control, id, &kinds, &added).await;
                return Err(error);
            }
            if let Err(error) = store
                .update_body(
                    &keys::groups(&application),
                    &current,
                    &settings,
                    group.settings.version,
                )
                .await
            {
                remove_hooks(control, id, &kinds, &added).await;
                if now && !was {
                    remove_hooks(control, id, &termination, &kept).await;
                }
                return Err(error.into());
            }
            let mut not_cleaned_up = remove_hooks(control, id, &HookKind::ALL, &removed).await;
            if was && !now {
                not_cleaned_up.extend(remove_hooks(control, id, &termination, &kept).await);
            }
            Ok(json!({"hooksNotCleanedUp": not_cleaned_up}))
        }
        "DeleteDeploymentGroup" => {
            let application = application_field(&input)?;
            let group = group_field(&input)?;
            let loaded = control.load_group(&application, &group).await?;
            store
                .delete(
                    &keys::groups(&application),
                    &group,
                    Some("attribute_not_exists(activeDeploymentId)"),
                )
                .await
                .map_err(|error| match error {
                    StoreError::Conflict(_) => ApiError::new(
                        Exception::DeploymentAlreadyStarted,
                        format!("deployment group {group} has an active deployment; stop it first"),
                    ),
                    other => other.into(),
                })?;
            // As CodeDeploy: the group is gone either way; hooks that could not be
            // removed are listed for the caller to remove.
            let settings = &loaded.settings.value;
            let not_cleaned_up = remove_hooks(
                control,
                &settings.deployment_group_id,
                &HookKind::ALL,
                &settings.targets.auto_scaling_groups,
            )
            .await;
            Ok(json!({"hooksNotCleanedUp": not_cleaned_up}))
        }
        other => Err(unknown_operation(other)),
    }
}

/// Deployment configurations.
async fn deployment_configs(
    control: &ControlPlane,
    name: &str,
    input: Value,
) -> Result<Value, ApiError> {
    let store = &control.store;
    match name {
        "CreateDeploymentConfig" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase", deny_unknown_fields)]
            struct ConfigInput {
                deployment_config_name: String,
                minimum_healthy_hosts: Option<MinimumHealthyHosts>,
                #[serde(default)]
                zonal_config: Option<ZonalConfig>,
                #[serde(default)]
                compute_platform: Option<String>,
                #[serde(default)]
                traffic_routing_config: Option<Value>,
            }
            let request: ConfigInput = parse_input(name, input)?;
            check_name("deploymentConfigName", &request.deployment_config_name)?;
            if request
                .traffic_routing_config
                .as_ref()
                .is_some_and(|v| !is_blank(v))
            {
                return Err(ApiError::invalid_input(
                    "trafficRoutingConfig: applies to Lambda and ECS deployments, not to the Server platform",
                ));
            }
            if request
                .compute_platform
                .as_deref()
                .is_some_and(|p| p != "Server")
            {
                return Err(ApiError::new(
                    Exception::InvalidComputePlatform,
                    "computePlatform: Gantry's deployment configurations are for the Server platform",
                ));
            }
            let rule = request.minimum_healthy_hosts.ok_or_else(|| {
                ApiError::new(
                    Exception::InvalidMinimumHealthyHostValue,
                    "minimumHealthyHosts: is required ({\"type\": \"HOST_COUNT\" or \"FLEET_PERCENT\", \"value\": n})",
                )
            })?;
            let config = DeploymentConfig::custom(
                &request.deployment_config_name,
                rule,
                request.zonal_config,
            )
            .map_err(|error| {
                let code = match error {
                    gantry_core::config::ConfigError::ReservedName(_)
                    | gantry_core::config::ConfigError::NameLength(_) => {
                        Exception::InvalidDeploymentConfigName
                    }
                    gantry_core::config::ConfigError::ZonePercentOutOfRange(_)
                    | gantry_core::config::ConfigError::ZoneReservedType => {
                        Exception::InvalidZonalDeploymentConfiguration
                    }
                    _ => Exception::InvalidMinimumHealthyHostValue,
                };
                ApiError::new(code, error.to_string())
            })?;
            let info = DeploymentConfigInfo {
                deployment_config_id: Some(uuid::Uuid::new_v4().to_string()),
                deployment_config_name: config.name.clone(),
                minimum_healthy_hosts: config.minimum_healthy_hosts,
                zonal_config: config.zonal_config,
                create_time: Some(seconds(now_millis())),
                compute_platform: "Server".into(),
            };
            store
                .put_new(keys::CONFIGS, &config.name, &info, &[])
                .await
                .map_err(|error| match error {
                    StoreError::Conflict(_) => ApiError::new(
                        Exception::DeploymentConfigAlreadyExists,
                        format!("deploymentConfigName: {:?} already exists", config.name),
                    ),
                    other => other.into(),
                })?;
            Ok(json!({"deploymentConfigId": info.deployment_config_id}))
        }
        "GetDeploymentConfig" => {
            let config_name = name_field(
                &input,
                "deploymentConfigName",
                Exception::DeploymentConfigNameRequired,
            )?;
            let config = control.deployment_config(&config_name).await?;
            let stored = store
                .get::<DeploymentConfigInfo>(keys::CONFIGS, &config_name)
                .await?;
            let info = match stored {
                Some(stored) => stored.value,
                None => DeploymentConfigInfo {
                    deployment_config_id: None,
                    deployment_config_name: config.name,
                    minimum_healthy_hosts: config.minimum_healthy_hosts,
                    zonal_config: config.zonal_config,
                    create_time: None,
                    compute_platform: "Server".into(),
                },
            };
            Ok(json!({"deploymentConfigInfo": info}))
        }
        "ListDeploymentConfigs" => {
            let mut names: Vec<String> = DeploymentConfig::all_predefined()
                .into_iter()
                .map(|c| c.name)
                .collect();
            let custom: Vec<DeploymentConfigInfo> = store.list(keys::CONFIGS).await?;
            names.extend(custom.into_iter().map(|c| c.deployment_config_name));
            let (names, next) = page(names, &input, String::clone)?;
            Ok(with_next_token(
                json!({"deploymentConfigsList": names}),
                next,
            ))
        }
        "DeleteDeploymentConfig" => {
            let config_name = name_field(
                &input,
                "deploymentConfigName",
                Exception::DeploymentConfigNameRequired,
            )?;
            if DeploymentConfig::predefined(&config_name).is_some() {
                return Err(ApiError::new(
                    Exception::InvalidOperation,
                    format!(
                        "deploymentConfigName: {config_name} is predefined and cannot be deleted"
                    ),
                ));
            }
            let users: Vec<String> = all_groups(control)
                .await?
                .into_iter()
                .filter(|group| group.deployment_config_name == config_name)
                .map(|group| format!("{}/{}", group.application_name, group.deployment_group_name))
                .collect();
            if !users.is_empty() {
                return Err(ApiError::new(
                    Exception::DeploymentConfigInUse,
                    format!(
                        "deploymentConfigName: {config_name} is used by deployment group(s) {}; give them another configuration first",
                        users.join(", ")
                    ),
                ));
            }
            store.delete(keys::CONFIGS, &config_name, None).await?;
            Ok(json!({}))
        }
        other => Err(unknown_operation(other)),
    }
}

/// On-premises instances and their tags.
async fn on_premises_instances(
    control: &ControlPlane,
    name: &str,
    input: Value,
) -> Result<Value, ApiError> {
    let store = &control.store;
    match name {
        "RegisterOnPremisesInstance" => {
            let instance = name_field(&input, "instanceName", Exception::InstanceNameRequired)?;
            check_instance_name(&instance)?;
            let (arn, identity) = iam_identity(&input)?;
            let sender_id = control.identities.sender_id(&identity, &arn).await?;
            let user = matches!(identity, IamIdentity::User { .. });
            let info = OnPremisesInstance {
                instance_name: instance.clone(),
                iam_session_arn: (!user).then(|| arn.clone()),
                iam_user_arn: user.then(|| arn.clone()),
                instance_arn: format!(
                    "arn:aws:codedeploy:{}:{}:instance/{instance}",
                    control.settings.region, control.settings.account_id
                ),
                register_time: seconds(now_millis()),
                deregister_time: None,
                tags: Vec::new(),
                sender_id: Some(sender_id),
            };
            // One instance per identity (its SenderId, whatever ARN spelling named it):
            // two sharing one could report for each other.
            let claim = sender_claim(info.sender_id.as_deref().unwrap_or_default());
            // A deregistered instance's name may be registered again, as in CodeDeploy.
            let deregistered = store
                .get::<OnPremisesInstance>(keys::INSTANCES, &instance)
                .await?
                .filter(|stored| stored.value.deregister_time.is_some())
                .map(|stored| stored.version);
            match store
                .put_claiming(keys::INSTANCES, &instance, &info, deregistered, &claim)
                .await
            {
                Ok(()) => {}
                Err(StoreError::Conflict(_)) => {
                    return Err(match store.claim_owner(&claim).await? {
                        Some(owner) if owner != format!("{}/{instance}", keys::INSTANCES) => {
                            let holder = owner.rsplit('/').next().unwrap_or_default();
                            let (code, field) = if user {
                                (Exception::IamUserArnAlreadyRegistered, "iamUserArn")
                            } else {
                                (Exception::IamSessionArnAlreadyRegistered, "iamSessionArn")
                            };
                            ApiError::new(
                                code,
                                format!(
                                    "{field}: {arn} is already registered to instance {holder:?}; each instance needs its own IAM identity"
                                ),
                            )
                        }
                        _ => ApiError::new(
                            Exception::InstanceNameAlreadyRegistered,
                            format!("instanceName: {instance:?} is already registered"),
                        ),
                    });
                }
                Err(other) => return Err(other.into()),
            }
            // The agent long-polls its queue from the start.
            control.queues.url(&instance).await?;
            Ok(json!({}))
        }
        "DeregisterOnPremisesInstance" => {
            let instance = name_field(&input, "instanceName", Exception::InstanceNameRequired)?;
            update_instance(control, &instance, |info| {
                info.deregister_time.get_or_insert(seconds(now_millis()));
            })
            .await?;
            // Its identity may serve a new instance.
            let info = stored_instance(control, &instance).await?;
            if let Some(sender_id) = &info.sender_id {
                store
                    .release_claim(&sender_claim(sender_id), keys::INSTANCES, &instance)
                    .await?;
            }
            Ok(json!({}))
        }
        "AddTagsToOnPremisesInstances" | "RemoveTagsFromOnPremisesInstances" => {
            let adding = name == "AddTagsToOnPremisesInstances";
            let tags: Vec<Tag> = serde_json::from_value(
                input.get("tags").cloned().unwrap_or(Value::Null),
            )
            .map_err(|_| {
                ApiError::new(
                    Exception::TagRequired,
                    "tags: a list of {\"Key\", \"Value\"} is required",
                )
            })?;
            let instances = names_field(&input, "instanceNames")?;
            if instances.is_empty() {
                return Err(ApiError::new(
                    Exception::InstanceNameRequired,
                    "instanceNames: is required",
                ));
            }
            for instance in &instances {
                update_instance(control, instance, |info| {
                    for tag in &tags {
                        info.tags.retain(|have| have.key != tag.key);
                        if adding {
                            info.tags.push(tag.clone());
                        }
                    }
                })
                .await?;
            }
            Ok(json!({}))
        }
        "GetOnPremisesInstance" => {
            let instance = name_field(&input, "instanceName", Exception::InstanceNameRequired)?;
            Ok(json!({"instanceInfo": get_instance(control, &instance).await?}))
        }
        "BatchGetOnPremisesInstances" => {
            let mut infos = Vec::new();
            for instance in batch_names(&input, "instanceNames", 100)? {
                infos.push(get_instance(control, &instance).await?);
            }
            Ok(json!({"instanceInfos": infos}))
        }
        "ListOnPremisesInstances" => {
            let instances: Vec<OnPremisesInstance> = store.list(keys::INSTANCES).await?;
            let status = input.get("registrationStatus").and_then(Value::as_str);
            let filters: Vec<gantry_core::planner::TagFilter> =
                serde_json::from_value(input.get("tagFilters").cloned().unwrap_or(json!([])))
                    .map_err(|error| ApiError::invalid_input(format!("tagFilters: {error}")))?;
            let names: Vec<String> = instances
                .into_iter()
                .filter(|info| match status {
                    Some("Registered") => info.deregister_time.is_none(),
                    Some("Deregistered") => info.deregister_time.is_some(),
                    _ => true,
                })
                .filter(|info| {
                    let tags: Vec<(&str, &str)> = info
                        .tags
                        .iter()
                        .map(|t| (t.key.as_str(), t.value.as_str()))
                        .collect();
                    filters.is_empty() || gantry_core::planner::matches_any(&filters, &tags)
                })
                .map(|info| info.instance_name)
                .collect();
            let (names, next) = page(names, &input, String::clone)?;
            Ok(with_next_token(json!({"instanceNames": names}), next))
        }
        other => Err(unknown_operation(other)),
    }
}

/// Application revisions.
async fn revisions(control: &ControlPlane, name: &str, input: Value) -> Result<Value, ApiError> {
    let store = &control.store;
    match name {
        "RegisterApplicationRevision" => {
            let output = super::push::handle(control, parse_input(name, input)?).await?;
            Ok(json!(output))
        }
        "GetApplicationRevision" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase", deny_unknown_fields)]
            struct GetRevisionInput {
                application_name: String,
                revision: RevisionLocation,
            }
            let request: GetRevisionInput = parse_input(name, input)?;
            get_application(control, &request.application_name).await?;
            let revisions: Vec<RevisionRecord> = store
                .list(&keys::revisions(&request.application_name))
                .await?;
            let found = find_revision(&revisions, &request.revision).ok_or_else(|| {
                ApiError::new(
                    Exception::RevisionDoesNotExist,
                    "revision: this application has no such registered revision",
                )
            })?;
            Ok(json!({
                "applicationName": request.application_name,
                "revision": found.revision_location,
                "revisionInfo": revision_info(found),
            }))
        }
        "BatchGetApplicationRevisions" => {
            let application = application_field(&input)?;
            if input.get("revisions").is_none_or(is_blank) {
                return Err(ApiError::new(
                    Exception::RevisionRequired,
                    "revisions: is required",
                ));
            }
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase", deny_unknown_fields)]
            struct BatchGetRevisionsInput {
                #[serde(rename = "applicationName")]
                _application_name: String,
                revisions: Vec<RevisionLocation>,
            }
            let request: BatchGetRevisionsInput = parse_input(name, input)?;
            if request.revisions.len() > 25 {
                return Err(ApiError::new(
                    Exception::BatchLimitExceeded,
                    format!(
                        "revisions: at most 25 per call, found {}",
                        request.revisions.len()
                    ),
                ));
            }
            get_application(control, &application).await?;
            let registered: Vec<RevisionRecord> =
                store.list(&keys::revisions(&application)).await?;
            let mut infos = Vec::new();
            let mut missing = Vec::new();
            for (index, wanted) in request.revisions.iter().enumerate() {
                match find_revision(&registered, wanted) {
                    Some(found) => infos.push(json!({
                        "revisionLocation": found.revision_location,
                        "genericRevisionInfo": revision_info(found),
                    })),
                    None => missing.push(format!("revisions[{index}]")),
                }
            }
            let mut output = json!({"applicationName": application, "revisions": infos});
            if !missing.is_empty() {
                output["errorMessage"] = json!(format!(
                    "{}: this application has no such registered revision",
                    missing.join(", ")
                ));
            }
            Ok(output)
        }
        "ListApplicationRevisions" => {
            let application = application_field(&input)?;
            get_application(control, &application).await?;
            let mut revisions: Vec<RevisionRecord> =
                store.list(&keys::revisions(&application)).await?;
            revisions.sort_by(|a, b| b.register_time.total_cmp(&a.register_time));
            let locations: Vec<RevisionLocation> =
                revisions.into_iter().map(|r| r.revision_location).collect();
            let (locations, next) = page(locations, &input, crate::adapters::revision_key)?;
            Ok(with_next_token(json!({"revisions": locations}), next))
        }
        other => Err(unknown_operation(other)),
    }
}

/// Deployments and their targets.
async fn deployments(control: &ControlPlane, name: &str, input: Value) -> Result<Value, ApiError> {
    match name {
        "CreateDeployment" => {
            let output =
                super::create_deployment::handle(control, parse_input(name, input)?).await?;
            Ok(json!(output))
        }
        "GetDeployment" => {
            let id = deployment_id_field(&input)?;
            Ok(json!({"deploymentInfo": deployment_info_with_incidents(control, &id).await?}))
        }
        "BatchGetDeployments" => {
            let mut infos = Vec::new();
            for id in batch_names(&input, "deploymentIds", 100)? {
                infos.push(deployment_info_with_incidents(control, &id).await?);
            }
            Ok(json!({"deploymentsInfo": infos}))
        }
        "ListDeployments" => list_deployments(control, &input).await,
        "ListDeploymentTargets" => {
            let id = deployment_id_field(&input)?;
            let record = load(control, &id).await?;
            let filters = input.get("targetFilters");
            let statuses = filter_values(
                filters.and_then(|f| f.get("TargetStatus")),
                "targetFilters.TargetStatus",
                &INSTANCE_STATUSES,
                Exception::InvalidInput,
            )?;
            let labels = filter_values(
                filters.and_then(|f| f.get("ServerInstanceLabel")),
                "targetFilters.ServerInstanceLabel",
                &INSTANCE_LABELS,
                Exception::InvalidInput,
            )?;
            list_hosts(control, &record, &input, "targetIds", statuses, labels).await
        }
        "ListDeploymentInstances" => {
            let id = deployment_id_field(&input)?;
            let record = load(control, &id).await?;
            let statuses = filter_values(
                input.get("instanceStatusFilter"),
                "instanceStatusFilter",
                &INSTANCE_STATUSES,
                Exception::InvalidInstanceStatus,
            )?;
            let types = filter_values(
                input.get("instanceTypeFilter"),
                "instanceTypeFilter",
                &INSTANCE_LABELS,
                Exception::InvalidInstanceType,
            )?;
            list_hosts(control, &record, &input, "instancesList", statuses, types).await
        }
        "BatchGetDeploymentTargets" | "GetDeploymentTarget" => {
            let id = deployment_id_field(&input)?;
            let record = load(control, &id).await?;
            let (field, wanted) = if name == "GetDeploymentTarget" {
                let target = name_field(&input, "targetId", Exception::DeploymentTargetIdRequired)?;
                ("targetId", vec![target])
            } else {
                ("targetIds", batch_names(&input, "targetIds", 25)?)
            };
            let mut targets = Vec::new();
            for (target_id, state) in host_states(control, &record, &wanted, &mut None).await? {
                let state = state.ok_or_else(|| {
                    ApiError::new(
                        Exception::DeploymentTargetDoesNotExist,
                        format!("{field}: {target_id} is not a target of {id}"),
                    )
                })?;
                targets.push(target_info(control, &record, &state));
            }
            Ok(if name == "GetDeploymentTarget" {
                json!({"deploymentTarget": targets.pop()})
            } else {
                json!({"deploymentTargets": targets})
            })
        }
        "GetDeploymentInstance" => {
            let id = deployment_id_field(&input)?;
            let record = load(control, &id).await?;
            let instance = name_field(&input, "instanceId", Exception::InstanceIdRequired)?;
            let states = host_states(control, &record, &[instance], &mut None).await?;
            let (instance, state) = states.into_iter().next().expect("one asked, one answered");
            let state = state.ok_or_else(|| {
                ApiError::new(
                    Exception::InstanceDoesNotExist,
                    format!("instanceId: {instance} is not an instance of {id}"),
                )
            })?;
            Ok(json!({"instanceSummary": instance_summary(&record, &state)}))
        }
        "BatchGetDeploymentInstances" => {
            let id = deployment_id_field(&input)?;
            let record = load(control, &id).await?;
            let wanted = batch_names(&input, "instanceIds", 25)?;
            if wanted.is_empty() {
                return Err(ApiError::new(
                    Exception::InstanceIdRequired,
                    "instanceIds: is required",
                ));
            }
            let mut summaries = Vec::new();
            let mut missing = Vec::new();
            for (instance, state) in host_states(control, &record, &wanted, &mut None).await? {
                match state {
                    Some(state) => summaries.push(instance_summary(&record, &state)),
                    None => missing.push(instance),
                }
            }
            let mut output = json!({"instancesSummary": summaries});
            if !missing.is_empty() {
                output["errorMessage"] = json!(format!(
                    "instanceIds: not instances of {id}: {}",
                    missing.join(", ")
                ));
            }
            Ok(output)
        }
        "StopDeployment" => {
            let id = deployment_id_field(&input)?;
            let rollback = input.get("autoRollbackEnabled").and_then(Value::as_bool);
            stop(control, &id, rollback).await
        }
        "ContinueDeployment" => continue_deployment(control, &input).await,
        "SkipWaitTimeForInstanceTermination" => {
            let mut input = input;
            input["deploymentWaitType"] = json!("TERMINATION_WAIT");
            continue_deployment(control, &input).await
        }
        other => Err(unknown_operation(other)),
    }
}

/// ContinueDeployment: ends a blue/green deployment's wait, READY_WAIT (traffic is
/// rerouted now) or TERMINATION_WAIT (the original fleet is terminated now, as
/// SkipWaitTimeForInstanceTermination does). CodeDeploy's answers otherwise: an ended
/// deployment is completed already, an in-place one does not support the action, and
/// one that is not in that wait is not ready.
async fn continue_deployment(control: &ControlPlane, input: &Value) -> Result<Value, ApiError> {
    let id = deployment_id_field(input)?;
    let wait = match input.get("deploymentWaitType").filter(|v| !v.is_null()) {
        None => WaitType::ReadyWait,
        Some(wait) => match wait.as_str() {
            Some("READY_WAIT") => WaitType::ReadyWait,
            Some("TERMINATION_WAIT") => WaitType::TerminationWait,
            _ => {
                return Err(ApiError::new(
                    Exception::InvalidDeploymentWaitType,
                    format!("deploymentWaitType: {wait} is not READY_WAIT or TERMINATION_WAIT"),
                ));
            }
        },
    };
    let record = load(control, &id).await?;
    let status = serialized_name(&record.state.status);
    if record.state.status.is_terminal() {
        return Err(ApiError::new(
            Exception::DeploymentAlreadyCompleted,
            format!("deploymentId: deployment {id} already ended with status {status}"),
        ));
    }
    if record.state.blue_green.is_none() {
        return Err(ApiError::new(
            Exception::UnsupportedActionForDeploymentType,
            format!(
                "deploymentId: deployment {id} is an IN_PLACE deployment ({status}); ContinueDeployment applies to blue/green deployments waiting for traffic rerouting or for the original instances' termination"
            ),
        ));
    }
    let applied = effects::advance(
        control,
        &id,
        &[Input::Continue {
            wait,
            now: now_millis(),
        }],
    )
    .await?;
    if let Some((_, error)) = applied.refused.first() {
        let stage = applied
            .record
            .state
            .blue_green
            .as_ref()
            .map(|bg| format!("{:?}", bg.stage))
            .unwrap_or_default();
        return Err(ApiError::new(
            Exception::DeploymentIsNotInReadyState,
            format!(
                "deploymentId: deployment {id} is not waiting for that ({error}); it is {status}, at stage {stage}"
            ),
        ));
    }
    Ok(json!({}))
}

/// A `deploymentId` that is given and has CodeDeploy's form (`d-` and nine of A-Z, 0-9).
fn deployment_id_field(input: &Value) -> Result<String, ApiError> {
    let id = name_field(input, "deploymentId", Exception::DeploymentIdRequired)?;
    gantry_core::wire::check_deployment_id(&id)
        .map_err(|error| ApiError::new(Exception::InvalidDeploymentId, error.to_string()))?;
    Ok(id)
}

/// The latest registration of `wanted` among an application's revisions.
fn find_revision<'a>(
    revisions: &'a [RevisionRecord],
    wanted: &RevisionLocation,
) -> Option<&'a RevisionRecord> {
    revisions
        .iter()
        .filter(|record| same_revision(&record.revision_location, wanted))
        .max_by(|a, b| a.register_time.total_cmp(&b.register_time))
}

/// CodeDeploy's GenericRevisionInfo of a registered revision.
fn revision_info(record: &RevisionRecord) -> Value {
    json!({"description": record.description, "registerTime": record.register_time})
}

fn same_revision(stored: &RevisionLocation, wanted: &RevisionLocation) -> bool {
    match (stored, wanted) {
        (
            RevisionLocation::S3 { s3_location: have },
            RevisionLocation::S3 { s3_location: want },
        ) => {
            have.bucket == want.bucket
                && have.key == want.key
                && want
                    .version
                    .as_ref()
                    .is_none_or(|v| have.version.as_ref() == Some(v))
                && want
                    .e_tag
                    .as_ref()
                    .is_none_or(|t| have.e_tag.as_ref() == Some(t))
        }
        (have, want) => have == want,
    }
}

async fn get_application(control: &ControlPlane, name: &str) -> Result<ApplicationInfo, ApiError> {
    Ok(control
        .store
        .get::<ApplicationInfo>(keys::APPLICATIONS, name)
        .await?
        .ok_or_else(|| ApiError::application_missing(name))?
        .value)
}

/// The one IAM ARN RegisterOnPremisesInstance needs, parsed.
fn iam_identity(input: &Value) -> Result<(String, IamIdentity), ApiError> {
    let field = |name: &str| input.get(name).and_then(Value::as_str).map(str::to_owned);
    match (field("iamUserArn"), field("iamSessionArn")) {
        (Some(_), Some(_)) => Err(ApiError::new(
            Exception::MultipleIamArnsProvided,
            "iamUserArn, iamSessionArn: give one of them, not both",
        )),
        (None, None) => Err(ApiError::new(
            Exception::IamArnRequired,
            "iamUserArn or iamSessionArn is required: the IAM user or role session the instance's agent runs as (its reports are accepted only from that identity)",
        )),
        (Some(arn), None) => IamIdentity::user(&arn)
            .map(|identity| (arn, identity))
            .map_err(|message| ApiError::new(Exception::InvalidIamUserArn, message)),
        (None, Some(arn)) => IamIdentity::session(&arn)
            .map(|identity| (arn, identity))
            .map_err(|message| ApiError::new(Exception::InvalidIamSessionArn, message)),
    }
}

fn sender_claim(sender_id: &str) -> String {
    format!("SENDER#{sender_id}")
}

/// A registered instance, as the API shows it.
async fn get_instance(control: &ControlPlane, name: &str) -> Result<OnPremisesInstance, ApiError> {
    let mut info = stored_instance(control, name).await?;
    info.sender_id = None;
    Ok(info)
}

async fn stored_instance(
    control: &ControlPlane,
    name: &str,
) -> Result<OnPremisesInstance, ApiError> {
    Ok(control
        .store
        .get::<OnPremisesInstance>(keys::INSTANCES, name)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                Exception::InstanceNotRegistered,
                format!("instanceName: {name:?} is not registered"),
            )
        })?
        .value)
}

/// Read-modify-write of an instance, conditional on its version; retried on a race.
async fn update_instance(
    control: &ControlPlane,
    name: &str,
    change: impl Fn(&mut OnPremisesInstance),
) -> Result<(), ApiError> {
    for _ in 0..8 {
        let stored = control
            .store
            .get::<OnPremisesInstance>(keys::INSTANCES, name)
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    Exception::InstanceNotRegistered,
                    format!("instanceNames: {name:?} is not registered"),
                )
            })?;
        let mut info = stored.value;
        change(&mut info);
        match control
            .store
            .update_body(keys::INSTANCES, name, &info, stored.version)
            .await
        {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict(_)) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(ApiError::new(
        Exception::ConcurrentModification,
        format!("instance {name} kept changing; try again"),
    ))
}

/// CreateDeploymentGroup's and UpdateDeploymentGroup's input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GroupInput {
    application_name: String,
    #[serde(default)]
    deployment_group_name: Option<String>,
    #[serde(default)]
    current_deployment_group_name: Option<String>,
    #[serde(default)]
    new_deployment_group_name: Option<String>,
    #[serde(default)]
    deployment_config_name: Option<String>,
    #[serde(flatten)]
    targets: TargetChanges,
    #[serde(default)]
    service_role_arn: Option<String>,
    #[serde(default)]
    trigger_configurations: Option<Vec<TriggerConfig>>,
    #[serde(default)]
    auto_rollback_configuration: Option<AutoRollbackConfiguration>,
    #[serde(default)]
    outdated_instances_strategy: Option<String>,
    #[serde(default)]
    deployment_style: Option<Value>,
    #[serde(default)]
    alarm_configuration: Option<Value>,
    #[serde(default)]
    blue_green_deployment_configuration: Option<Value>,
    #[serde(default)]
    load_balancer_info: Option<Value>,
    #[serde(default)]
    ecs_services: Option<Value>,
    /// CreateDeploymentGroup's resource tags (UpdateDeploymentGroup takes none: they
    /// change through TagResource).
    #[serde(default)]
    tags: Option<Value>,
    /// Put a termination hook on the Auto Scaling groups: a terminating instance's
    /// application is stopped (with the traffic blocked first) before it goes.
    #[serde(default)]
    termination_hook_enabled: Option<bool>,
}

impl GroupInput {
    /// Checks the input and merges it over `current` (for an update).
    async fn settings(
        &self,
        control: &ControlPlane,
        current: Option<&DeploymentGroupSettings>,
    ) -> Result<DeploymentGroupSettings, ApiError> {
        let targets = self
            .targets
            .applied_to(&current.map(|c| c.targets.clone()).unwrap_or_default());
        targets
            .validate()
            .map_err(|message| ApiError::new(Exception::InvalidTag, message))?;
        let (deployment_style, load_balancer_info) = self.traffic_settings(control, current)?;
        let blue_green_deployment_configuration =
            self.blue_green_settings(&deployment_style, &targets, current)?;
        // Left out, the group keeps its alarms; given, it replaces them.
        let alarm_configuration = match &self.alarm_configuration {
            Some(value) => {
                crate::model::AlarmConfiguration::from_input("alarmConfiguration", value.clone())
                    .map_err(crate::deploy::alarm_error)?
            }
            None => current
                .map(|c| c.alarm_configuration.clone())
                .unwrap_or_default(),
        };
        if self.ecs_services.as_ref().is_some_and(|v| !is_blank(v)) {
            return Err(ApiError::invalid_input(
                "ecsServices: not supported; Gantry deploys to EC2 and on-premises instances (compute platform Server)",
            ));
        }
        let config_name = self
            .deployment_config_name
            .clone()
            .filter(|name| !name.is_empty())
            .or_else(|| current.map(|c| c.deployment_config_name.clone()))
            .unwrap_or_else(|| gantry_core::config::ONE_AT_A_TIME.to_owned());
        control.deployment_config(&config_name).await?;
        let triggers = self
            .trigger_configurations
            .clone()
            .or_else(|| current.map(|c| c.trigger_configurations.clone()))
            .unwrap_or_default();
        if triggers.len() > MAX_TRIGGERS {
            return Err(ApiError::new(
                Exception::TriggerTargetsLimitExceeded,
                format!(
                    "triggerConfigurations: {} triggers; a deployment group has at most {MAX_TRIGGERS}",
                    triggers.len()
                ),
            ));
        }
        for (index, trigger) in triggers.iter().enumerate() {
            if trigger.trigger_name.chars().count() > TRIGGER_NAME_MAX_CHARS {
                return Err(ApiError::new(
                    Exception::InvalidTriggerConfig,
                    format!(
                        "triggerConfigurations[{index}].triggerName: at most {TRIGGER_NAME_MAX_CHARS} characters"
                    ),
                ));
            }
            if trigger.trigger_name.is_empty() || !trigger.trigger_target_arn.starts_with("arn:") {
                return Err(ApiError::new(
                    Exception::InvalidTriggerConfig,
                    format!(
                        "triggerConfigurations[{index}]: needs a triggerName and an SNS topic ARN as triggerTargetArn"
                    ),
                ));
            }
            if let Some(prefix) = &control.settings.trigger_topic_prefix {
                let settings = &control.settings;
                let allowed = trigger
                    .trigger_target_arn
                    .split(':')
                    .collect::<Vec<_>>()
                    .as_slice()
                    .get(2..6)
                    .is_some_and(|parts| {
                        parts[0] == "sns"
                            && parts[1] == settings.region
                            && parts[2] == settings.account_id
                            && parts[3].starts_with(prefix.as_str())
                    });
                if !allowed {
                    return Err(ApiError::new(
                        Exception::InvalidTriggerConfig,
                        format!(
                            "triggerConfigurations[{index}].triggerTargetArn: {:?} is not a topic this Gantry may publish to: name it {prefix}... in account {} and region {} (the stack's functions may publish only there)",
                            trigger.trigger_target_arn, settings.account_id, settings.region
                        ),
                    ));
                }
            }
            for event in &trigger.trigger_events {
                if !TRIGGER_EVENTS.contains(&event.as_str()) {
                    return Err(ApiError::new(
                        Exception::InvalidTriggerConfig,
                        format!(
                            "triggerConfigurations[{index}].triggerEvents: {event:?} is not one of {}",
                            TRIGGER_EVENTS.join(", ")
                        ),
                    ));
                }
            }
        }
        let auto_rollback = self
            .auto_rollback_configuration
            .clone()
            .or_else(|| current.map(|c| c.auto_rollback_configuration.clone()))
            .unwrap_or_default();
        auto_rollback
            .validate()
            .map_err(|message| ApiError::new(Exception::InvalidAutoRollbackConfig, message))?;
        let strategy = self
            .outdated_instances_strategy
            .clone()
            .or_else(|| current.map(|c| c.outdated_instances_strategy.clone()))
            .unwrap_or_else(|| "UPDATE".into());
        if strategy != "UPDATE" && strategy != "IGNORE" {
            return Err(ApiError::invalid_input(format!(
                "outdatedInstancesStrategy: {strategy:?} is not UPDATE or IGNORE"
            )));
        }
        Ok(DeploymentGroupSettings {
            application_name: self.application_name.clone(),
            deployment_group_id: current
                .map(|c| c.deployment_group_id.clone())
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            deployment_group_name: self.deployment_group_name.clone().unwrap_or_default(),
            deployment_config_name: config_name,
            targets,
            service_role_arn: self
                .service_role_arn
                .clone()
                .or_else(|| current.and_then(|c| c.service_role_arn.clone())),
            trigger_configurations: triggers,
            auto_rollback_configuration: auto_rollback,
            alarm_configuration,
            outdated_instances_strategy: strategy,
            deployment_style,
            load_balancer_info,
            termination_hook_enabled: self
                .termination_hook_enabled
                .or_else(|| current.map(|c| c.termination_hook_enabled))
                .unwrap_or(false),
            blue_green_deployment_configuration,
        })
    }

    /// `blueGreenDeploymentConfiguration`, as CodeDeploy keeps it. Given, it is read with
    /// CodeDeploy's defaults for what it leaves out (on an update, a part left out keeps the
    /// group's); left out, the group keeps its own. A BLUE_GREEN group always has one: the
    /// defaults when none was ever given. An IN_PLACE group stores one it is given, unused,
    /// as CodeDeploy does. Blue/green replaces EC2 instances only, so a BLUE_GREEN group
    /// selects no on-premises instances; and COPY_AUTO_SCALING_GROUP copies the group's one
    /// Auto Scaling group.
    fn blue_green_settings(
        &self,
        style: &DeploymentStyle,
        targets: &crate::model::TargetSelection,
        current: Option<&DeploymentGroupSettings>,
    ) -> Result<Option<crate::model::BlueGreenConfiguration>, ApiError> {
        use crate::model::{BLUE_GREEN, COPY_AUTO_SCALING_GROUP};
        let kept = current.and_then(|c| c.blue_green_deployment_configuration.as_ref());
        let config = match &self.blue_green_deployment_configuration {
            Some(value) if !is_blank(value) => Some(blue_green_configuration(value, kept)?),
            _ => kept.cloned(),
        };
        if style.deployment_type != BLUE_GREEN {
            return Ok(config);
        }
        let on_premises = if !targets.on_premises_instance_tag_filters.is_empty() {
            Some("onPremisesInstanceTagFilters")
        } else if targets
            .on_premises_tag_set
            .as_ref()
            .is_some_and(|set| !set.on_premises_tag_set_list.is_empty())
        {
            Some("onPremisesTagSet")
        } else {
            None
        };
        if let Some(field) = on_premises {
            return Err(ApiError::new(
                Exception::InvalidDeploymentStyle,
                format!(
                    "deploymentStyle.deploymentType: BLUE_GREEN replaces EC2 instances only, and {field} selects on-premises instances, which cannot be replaced; remove {field} or deploy IN_PLACE"
                ),
            ));
        }
        let config = config.unwrap_or_else(blue_green_defaults);
        let copied = targets.auto_scaling_groups.len();
        if config.green_fleet_provisioning_option.action == COPY_AUTO_SCALING_GROUP && copied != 1 {
            return Err(ApiError::new(
                Exception::InvalidBlueGreenDeploymentConfiguration,
                format!(
                    "{BLUE_GREEN_FIELD}.greenFleetProvisioningOption.action: COPY_AUTO_SCALING_GROUP copies the group's Auto Scaling group, so autoScalingGroups must name exactly one; it names {copied}"
                ),
            ));
        }
        Ok(Some(config))
    }

    /// `deploymentStyle` and `loadBalancerInfo`, each kept from `current` when left out.
    /// With WITH_TRAFFIC_CONTROL, in-place hosts leave and rejoin the ELBv2 target groups
    /// of `targetGroupInfoList` around their install, and blue/green reroutes traffic
    /// through them (BLUE_GREEN needs WITH_TRAFFIC_CONTROL); either needs the lifecycle
    /// queue (it carries the checks of target health).
    fn traffic_settings(
        &self,
        control: &ControlPlane,
        current: Option<&DeploymentGroupSettings>,
    ) -> Result<(DeploymentStyle, LoadBalancerInfo), ApiError> {
        let style = match &self.deployment_style {
            Some(value) if !is_blank(value) => {
                let style: DeploymentStyle = serde_json::from_value(value.clone()).map_err(|error| {
                    ApiError::new(
                        Exception::InvalidDeploymentStyle,
                        format!("deploymentStyle: {error}; give deploymentType IN_PLACE or BLUE_GREEN and deploymentOption WITH_TRAFFIC_CONTROL or WITHOUT_TRAFFIC_CONTROL"),
                    )
                })?;
                if ![IN_PLACE, crate::model::BLUE_GREEN].contains(&style.deployment_type.as_str()) {
                    return Err(ApiError::new(
                        Exception::InvalidDeploymentStyle,
                        format!(
                            "deploymentStyle.deploymentType: {:?} is not IN_PLACE or BLUE_GREEN",
                            style.deployment_type
                        ),
                    ));
                }
                if ![WITH_TRAFFIC_CONTROL, WITHOUT_TRAFFIC_CONTROL]
                    .contains(&style.deployment_option.as_str())
                {
                    return Err(ApiError::new(
                        Exception::InvalidDeploymentStyle,
                        format!(
                            "deploymentStyle.deploymentOption: {:?} is not WITH_TRAFFIC_CONTROL or WITHOUT_TRAFFIC_CONTROL",
                            style.deployment_option
                        ),
                    ));
                }
                style
            }
            _ => current
                .map(|c| c.deployment_style.clone())
                .unwrap_or_default(),
        };
        let info = match &self.load_balancer_info {
            Some(value) if !value.is_null() => {
                for unsupported in ["elbInfoList", "targetGroupPairInfoList"] {
                    if value.get(unsupported).is_some_and(|v| !is_blank(v)) {
                        return Err(ApiError::new(
                            Exception::InvalidLoadBalancerInfo,
                            format!(
                                "loadBalancerInfo.{unsupported}: not supported; give Application or Network Load Balancer target groups in targetGroupInfoList"
                            ),
                        ));
                    }
                }
                let groups = value
                    .get("targetGroupInfoList")
                    .cloned()
                    .unwrap_or(Value::Null);
                let groups: Vec<Value> = serde_json::from_value(groups).unwrap_or_default();
                let mut names = Vec::new();
                for (index, group) in groups.iter().enumerate() {
                    let name = group
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if name.is_empty() {
                        return Err(ApiError::new(
                            Exception::InvalidLoadBalancerInfo,
                            format!(
                                "loadBalancerInfo.targetGroupInfoList[{index}].name: is required (the target group's name)"
                            ),
                        ));
                    }
                    names.push(TargetGroupInfo {
                        name: name.to_owned(),
                    });
                }
                LoadBalancerInfo {
                    target_group_info_list: names,
                }
            }
            _ => current
                .map(|c| c.load_balancer_info.clone())
                .unwrap_or_default(),
        };
        let blue_green = style.deployment_type == crate::model::BLUE_GREEN;
        if blue_green && style.deployment_option != WITH_TRAFFIC_CONTROL {
            return Err(ApiError::new(
                Exception::InvalidDeploymentStyle,
                format!(
                    "deploymentStyle.deploymentOption: deploymentType BLUE_GREEN needs WITH_TRAFFIC_CONTROL, not {:?}: traffic moves from the original instances to their replacements through the target groups of loadBalancerInfo",
                    style.deployment_option
                ),
            ));
        }
        if style.deployment_option == WITH_TRAFFIC_CONTROL {
            if info.is_empty() {
                let why = if blue_green {
                    " (BLUE_GREEN reroutes traffic through them)"
                } else {
                    ""
                };
                return Err(ApiError::new(
                    Exception::InvalidLoadBalancerInfo,
                    format!(
                        "loadBalancerInfo.targetGroupInfoList: deploymentOption WITH_TRAFFIC_CONTROL needs at least one target group{why}"
                    ),
                ));
            }
            if control.settings.lifecycle_queue_url.is_none() {
                return Err(ApiError::new(
                    Exception::InvalidLoadBalancerInfo,
                    "deploymentStyle: WITH_TRAFFIC_CONTROL needs Gantry's lifecycle queue (GANTRY_LIFECYCLE_QUEUE_URL), which carries the checks of target health; this Gantry has none",
                ));
            }
        }
        Ok((style, info))
    }
}

const BLUE_GREEN_FIELD: &str = "blueGreenDeploymentConfiguration";

/// CodeDeploy's longest wait of a blue/green deployment, in minutes (two days).
const MAX_BLUE_GREEN_WAIT_MINUTES: i64 = 2880;

/// `blueGreenDeploymentConfiguration` as given: every part and field may be left out.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BlueGreenInput {
    #[serde(default)]
    terminate_blue_instances_on_deployment_success: Option<BlueInstanceTerminationInput>,
    #[serde(default)]
    deployment_ready_option: Option<DeploymentReadyInput>,
    #[serde(default)]
    green_fleet_provisioning_option: Option<GreenFleetInput>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BlueInstanceTerminationInput {
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    termination_wait_time_in_minutes: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeploymentReadyInput {
    #[serde(default)]
    action_on_timeout: Option<String>,
    #[serde(default)]
    wait_time_in_minutes: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GreenFleetInput {
    #[serde(default)]
    action: Option<String>,
}

/// CodeDeploy's defaults: terminate the original instances an hour after success,
/// reroute as soon as the replacements are ready, and replace with instances the
/// deployment names (DISCOVER_EXISTING).
fn blue_green_defaults() -> crate::model::BlueGreenConfiguration {
    use crate::model::{
        BlueGreenConfiguration, BlueInstanceTermination, CONTINUE_DEPLOYMENT, DISCOVER_EXISTING,
        DeploymentReadyOption, GreenFleetProvisioningOption, TERMINATE,
    };
    BlueGreenConfiguration {
        terminate_blue_instances_on_deployment_success: BlueInstanceTermination {
            action: TERMINATE.into(),
            termination_wait_time_in_minutes: 60,
        },
        deployment_ready_option: DeploymentReadyOption {
            action_on_timeout: CONTINUE_DEPLOYMENT.into(),
            wait_time_in_minutes: 0,
        },
        green_fleet_provisioning_option: GreenFleetProvisioningOption {
            action: DISCOVER_EXISTING.into(),
        },
    }
}

/// Reads a given `blueGreenDeploymentConfiguration`. A part it leaves out is `kept`'s
/// (the group's, on an update) or CodeDeploy's default; a field a part leaves out (or
/// leaves blank) is CodeDeploy's default. Errors name the field and say what is allowed.
fn blue_green_configuration(
    value: &Value,
    kept: Option<&crate::model::BlueGreenConfiguration>,
) -> Result<crate::model::BlueGreenConfiguration, ApiError> {
    use crate::model::{
        BlueInstanceTermination, CONTINUE_DEPLOYMENT, COPY_AUTO_SCALING_GROUP, DISCOVER_EXISTING,
        DeploymentReadyOption, GreenFleetProvisioningOption, KEEP_ALIVE, STOP_DEPLOYMENT,
        TERMINATE,
    };
    let input: BlueGreenInput =
        serde_path_to_error::deserialize(value.clone()).map_err(|error| {
            let path = error.path().to_string();
            let inner = error.into_inner();
            if path == "." {
                blue_green_invalid(BLUE_GREEN_FIELD, inner)
            } else {
                blue_green_invalid(&format!("{BLUE_GREEN_FIELD}.{path}"), inner)
            }
        })?;
    let defaults = blue_green_defaults();
    let mut config = kept.cloned().unwrap_or_else(|| defaults.clone());
    if let Some(part) = input.terminate_blue_instances_on_deployment_success {
        let field = "terminateBlueInstancesOnDeploymentSuccess";
        config.terminate_blue_instances_on_deployment_success = BlueInstanceTermination {
            action: blue_green_choice(
                &format!("{field}.action"),
                part.action,
                [TERMINATE, KEEP_ALIVE],
            )?,
            termination_wait_time_in_minutes: blue_green_minutes(
                &format!("{field}.terminationWaitTimeInMinutes"),
                part.termination_wait_time_in_minutes,
                defaults
                    .terminate_blue_instances_on_deployment_success
                    .termination_wait_time_in_minutes,
            )?,
        };
    }
    if let Some(part) = input.deployment_ready_option {
        let field = "deploymentReadyOption";
        config.deployment_ready_option = DeploymentReadyOption {
            action_on_timeout: blue_green_choice(
                &format!("{field}.actionOnTimeout"),
                part.action_on_timeout,
                [CONTINUE_DEPLOYMENT, STOP_DEPLOYMENT],
            )?,
            // Only STOP_DEPLOYMENT waits; CodeDeploy keeps the number either way.
            wait_time_in_minutes: blue_green_minutes(
                &format!("{field}.waitTimeInMinutes"),
                part.wait_time_in_minutes,
                defaults.deployment_ready_option.wait_time_in_minutes,
            )?,
        };
    }
    if let Some(part) = input.green_fleet_provisioning_option {
        config.green_fleet_provisioning_option = GreenFleetProvisioningOption {
            action: blue_green_choice(
                "greenFleetProvisioningOption.action",
                part.action,
                [DISCOVER_EXISTING, COPY_AUTO_SCALING_GROUP],
            )?,
        };
    }
    Ok(config)
}

/// InvalidBlueGreenDeploymentConfigurationException about `field` (a path under
/// `blueGreenDeploymentConfiguration`).
fn blue_green_invalid(field: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        Exception::InvalidBlueGreenDeploymentConfiguration,
        format!("{field}: {message}"),
    )
}

/// One of the two `allowed` values of `field`; left out or blank (a CLI skeleton's ""),
/// the first: CodeDeploy's default.
fn blue_green_choice(
    field: &str,
    given: Option<String>,
    allowed: [&str; 2],
) -> Result<String, ApiError> {
    match given.filter(|given| !given.is_empty()) {
        None => Ok(allowed[0].to_owned()),
        Some(given) if allowed.contains(&given.as_str()) => Ok(given),
        Some(given) => Err(blue_green_invalid(
            &format!("{BLUE_GREEN_FIELD}.{field}"),
            format!("{given:?} is not {} or {}", allowed[0], allowed[1]),
        )),
    }
}

/// A wait of `field`, 0 to 2880 minutes; left out, `default`.
fn blue_green_minutes(field: &str, given: Option<i64>, default: u32) -> Result<u32, ApiError> {
    let Some(given) = given else {
        return Ok(default);
    };
    u32::try_from(given)
        .ok()
        .filter(|&minutes| i64::from(minutes) <= MAX_BLUE_GREEN_WAIT_MINUTES)
        .ok_or_else(|| {
            blue_green_invalid(
                &format!("{BLUE_GREEN_FIELD}.{field}"),
                format!("{given} minutes; give 0 to {MAX_BLUE_GREEN_WAIT_MINUTES} (two days)"),
            )
        })
}

async fn group_info(
    control: &ControlPlane,
    application: &str,
    group: &str,
) -> Result<Value, ApiError> {
    let record = control.load_group(application, group).await?;
    let mut info = serde_json::to_value(&record.settings.value).expect("settings serialize");
    info["computePlatform"] = json!("Server");
    info["autoScalingGroups"] = json!(
        record
            .settings
            .value
            .targets
            .auto_scaling_groups
            .iter()
            .map(|name| json!({"name": name}))
            .collect::<Vec<_>>()
    );
    if let Some(revision) = &record.target_revision {
        info["targetRevision"] = json!(revision);
    }
    if let Some(last) = &record.last_successful {
        info["lastSuccessfulDeployment"] = json!(last);
    }
    if let Some(last) = &record.last_attempted {
        info["lastAttemptedDeployment"] = json!(last);
    }
    Ok(info)
}

async fn load(
    control: &ControlPlane,
    id: &str,
) -> Result<DeploymentRecord<DeploymentSpec>, ApiError> {
    control
        .store
        .load_deployment(id)
        .await
        .map_err(|error| match error {
            StoreError::NotFound(_) => ApiError::deployment_missing(id),
            other => other.into(),
        })
}

fn time(millis: Option<Millis>) -> Value {
    millis.map_or(Value::Null, |millis| json!(seconds(millis)))
}

/// GetDeployment's `deploymentInfo` with what Gantry adds, when there is any: the
/// effects that failed for good (`failedEffects`, a notification to a deleted topic, say)
/// and how many reports were dropped because their host did not send them
/// (`forgedReports`). CodeDeploy's clients ignore both.
async fn deployment_info_with_incidents(
    control: &ControlPlane,
    id: &str,
) -> Result<Value, ApiError> {
    let mut info = deployment_info(&load(control, id).await?);
    let failed = control.store.failed_effects(id).await?;
    if !failed.is_empty() {
        info["failedEffects"] = failed
            .iter()
            .map(|failed| {
                json!({
                    "effect": failed.effect,
                    "reason": failed.reason,
                    "failures": failed.failures,
                    "firstTime": seconds(failed.first_time),
                    "lastTime": seconds(failed.last_time),
                })
            })
            .collect();
    }
    let forged = control.store.forged_reports(id).await?;
    if forged > 0 {
        info["forgedReports"] = json!(forged);
    }
    Ok(info)
}

/// GetDeployment's `deploymentInfo`.
pub fn deployment_info(record: &DeploymentRecord<DeploymentSpec>) -> Value {
    let spec = &record.spec;
    let state = &record.state;
    let counts = state.counts();
    // Ready hosts are deploying hosts that wait for traffic; once the deployment ended,
    // they never will, and count as skipped.
    let ready = state
        .blue_green
        .as_ref()
        .map_or(0, |bg| bg.installed.saturating_sub(bg.rerouted));
    let (ready, ended_ready) = match state.status.is_terminal() {
        true => (0, ready),
        false => (ready, 0),
    };
    let start_time = state.start_time;
    let mut rollback = record.rollback_info.clone();
    if rollback.rollback_triggering_deployment_id.is_none() {
        rollback.rollback_triggering_deployment_id = spec.rollback_triggering_deployment_id.clone();
    }
    let mut info = json!({
        "applicationName": spec.application_name,
        "deploymentGroupName": spec.deployment_group_name,
        "deploymentConfigName": spec.deployment_config_name,
        "deploymentId": spec.deployment_id,
        "revision": spec.revision,
        "status": serialized_name(&state.status),
        "createTime": seconds(state.create_time),
        "startTime": time(start_time),
        "completeTime": time(state.complete_time),
        "deploymentOverview": {
            "Pending": counts.pending,
            "InProgress": counts.in_progress.saturating_sub(ready + ended_ready),
            "Succeeded": counts.succeeded,
            "Failed": counts.failed,
            "Skipped": counts.skipped + ended_ready,
            "Ready": ready,
        },
        "creator": spec.creator,
        "ignoreApplicationStopFailures": spec.ignore_application_stop_failures,
        "autoRollbackConfiguration": spec.auto_rollback_configuration,
        "updateOutdatedInstancesOnly": spec.update_outdated_instances_only,
        "deploymentStyle": {
            "deploymentType": if state.blue_green.is_some() { BLUE_GREEN } else { IN_PLACE },
            "deploymentOption": if spec.target_groups.is_empty() { WITHOUT_TRAFFIC_CONTROL } else { WITH_TRAFFIC_CONTROL },
        },
        "fileExistsBehavior": spec.file_exists_behavior,
        "computePlatform": "Server",
        "instanceTerminationWaitTimeStarted": state
            .blue_green
            .as_ref()
            .is_some_and(|bg| bg.stage == gantry_core::deployment::Stage::TerminationWait),
    });
    if let Some(bg) = &state.blue_green {
        // Gantry's own: where the deployment stands, for `gantry deploy` to show.
        let fleets = spec.blue_green.clone().unwrap_or_default();
        info["blueGreenProgress"] = json!({
            "stage": bg.stage,
            "replacementInstances": bg.replacement,
            "originalInstances": bg.original,
            "installed": bg.installed,
            "rerouted": bg.rerouted,
            "waitUntil": time(bg.wait_until),
            "replacementAutoScalingGroup": fleets.replacement_auto_scaling_group,
            "originalAutoScalingGroups": fleets.original_auto_scaling_groups,
        });
        if let Some(configuration) = &fleets.configuration {
            info["blueGreenDeploymentConfiguration"] = json!(configuration);
        }
        if let Some(target_instances) = &fleets.target_instances {
            info["targetInstances"] = target_instances.clone();
        }
    }
    if let Some(alarms) = &spec.override_alarm_configuration {
        info["overrideAlarmConfiguration"] = json!(alarms);
    }
    if let Some(previous) = &spec.previous_revision {
        info["previousRevision"] = json!(previous);
    }
    if !spec.target_groups.is_empty() {
        let groups: Vec<Value> = spec
            .target_groups
            .iter()
            .map(|group| json!({"name": group.name}))
            .collect();
        info["loadBalancerInfo"] = json!({"targetGroupInfoList": groups});
    }
    if let Some(description) = &spec.description {
        info["description"] = json!(description);
    }
    if let Some(error) = &state.error {
        info["errorInformation"] = json!({"code": error.code, "message": error.message});
    }
    if rollback != Default::default() {
        info["rollbackInfo"] = json!(rollback);
    }
    info
}

/// The statuses a host of a deployment may have (ListDeploymentInstances' and
/// ListDeploymentTargets' filters).
const INSTANCE_STATUSES: [&str; 7] = [
    "Pending",
    "InProgress",
    "Succeeded",
    "Failed",
    "Skipped",
    "Unknown",
    "Ready",
];

/// Blue/green labels; an in-place deployment's hosts are all Blue (the original ones).
const INSTANCE_LABELS: [&str; 2] = ["Blue", "Green"];

/// A filter's values, each one of `allowed`.
fn filter_values(
    value: Option<&Value>,
    field: &str,
    allowed: &[&str],
    exception: Exception,
) -> Result<Option<Vec<String>>, ApiError> {
    let values: Option<Vec<String>> =
        match value {
            None | Some(Value::Null) => None,
            Some(value) => Some(serde_json::from_value(value.clone()).map_err(|_| {
                ApiError::invalid_input(format!("{field}: must be a list of strings"))
            })?),
        };
    for value in values.iter().flatten() {
        if !allowed.contains(&value.as_str()) {
            return Err(ApiError::new(
                exception,
                format!("{field}: {value:?} is not one of {}", allowed.join(", ")),
            ));
        }
    }
    Ok(values)
}

/// The hosts of a deployment in its order, a page at a time (`field` names the list),
/// those with one of `statuses` and `labels` if given. Statuses are read only as far as
/// one page needs.
async fn list_hosts(
    control: &ControlPlane,
    record: &DeploymentRecord<DeploymentSpec>,
    input: &Value,
    field: &str,
    statuses: Option<Vec<String>>,
    labels: Option<Vec<String>>,
) -> Result<Value, ApiError> {
    let plan = control.store.plan(&record.spec.deployment_id).await?;
    let ids: Vec<String> = plan
        .iter()
        .enumerate()
        .filter(|(index, _)| {
            let label = instance_label(&record.state, *index as u32);
            labels
                .as_ref()
                .is_none_or(|labels| labels.iter().any(|l| l == label))
        })
        .map(|(_, t)| t.instance_id.clone())
        .collect();
    let Some(statuses) = statuses else {
        let (ids, next) = page(ids, input, String::clone)?;
        return Ok(with_next_token(json!({ field: ids }), next));
    };
    let start = page_start(&ids, input, String::clone)?;
    let mut plan = Some(plan);
    let mut kept: Vec<String> = Vec::new();
    let mut next = None;
    'pages: for chunk in ids[start..].chunks(PAGE_SIZE) {
        for (id, state) in host_states(control, record, chunk, &mut plan).await? {
            if kept.len() == PAGE_SIZE {
                next = kept.last().map(|last| encode_token(last));
                break 'pages;
            }
            if state.is_some_and(|state| {
                statuses.contains(&serialized_name(&shown_status(&record.state, &state)))
            }) {
                kept.push(id);
            }
        }
    }
    Ok(with_next_token(json!({ field: kept }), next))
}

/// Each of the `wanted` hosts of a deployment, in the order asked, with its state: its
/// record once it has been sent its command, or what the plan says it is while it waits;
/// `None` for one that is not a target. `plan` is read the first time a host has no
/// record, and kept for the next call.
async fn host_states(
    control: &ControlPlane,
    record: &DeploymentRecord<DeploymentSpec>,
    wanted: &[String],
    plan: &mut Option<Vec<Target>>,
) -> Result<Vec<(String, Option<TargetState>)>, ApiError> {
    let id = &record.spec.deployment_id;
    let found = control.store.load_targets(id, wanted).await?;
    let mut states = Vec::with_capacity(wanted.len());
    for target_id in wanted {
        let state = match found.get(target_id) {
            Some(versioned) => Some(versioned.value.clone()),
            None => {
                if plan.is_none() {
                    *plan = Some(control.store.plan(id).await?);
                }
                let plan = plan.as_deref().unwrap_or_default();
                plan.iter()
                    .position(|t| &t.instance_id == target_id)
                    .map(|index| {
                        TargetState::waiting(
                            plan[index].clone(),
                            index as u32,
                            record.state.events_at(index as u32),
                            record.state.status,
                        )
                    })
            }
        };
        states.push((target_id.clone(), state));
    }
    Ok(states)
}

/// A host's lifecycle events, with their diagnostics.
fn lifecycle_events(target: &TargetState) -> Vec<Value> {
    target
        .events
        .iter()
        .map(|event| {
            let mut value = json!({
                "lifecycleEventName": event.event.name(),
                "status": serialized_name(&event.status),
                "startTime": time(event.start_time),
                "endTime": time(event.end_time),
            });
            if let Some(diagnostics) = &event.diagnostics {
                value["diagnostics"] = json!(diagnostics);
            }
            value
        })
        .collect()
}

/// An `instancesSummary` entry (GetDeploymentInstance, BatchGetDeploymentInstances).
fn instance_summary(record: &DeploymentRecord<DeploymentSpec>, target: &TargetState) -> Value {
    json!({
        "deploymentId": record.spec.deployment_id,
        "instanceId": target.target.instance_id,
        "status": serialized_name(&shown_status(&record.state, target)),
        "lastUpdatedAt": time(target.last_updated()),
        "lifecycleEvents": lifecycle_events(target),
        "instanceType": instance_label(&record.state, target.index),
    })
}

/// A host's status as readers see it: a blue/green replacement host left Ready when its
/// deployment ended never gets traffic, and is Skipped.
fn shown_status(
    state: &gantry_core::deployment::Deployment,
    target: &TargetState,
) -> gantry_core::deployment::TargetStatus {
    use gantry_core::deployment::TargetStatus;
    match target.status {
        TargetStatus::Ready if state.status.is_terminal() => TargetStatus::Skipped,
        status => status,
    }
}

/// CodeDeploy's label of a deployment's host: Green in a blue/green deployment's
/// replacement fleet, else Blue (the original fleet, and every host in place).
fn instance_label(state: &gantry_core::deployment::Deployment, index: u32) -> &'static str {
    match &state.blue_green {
        Some(bg) if bg.is_replacement(index) => "Green",
        _ => "Blue",
    }
}

/// One `deploymentTargets` entry: the instance with its lifecycle events and diagnostics.
fn target_info(
    control: &ControlPlane,
    record: &DeploymentRecord<DeploymentSpec>,
    target: &TargetState,
) -> Value {
    let events = lifecycle_events(target);
    let last_updated = target.last_updated();
    let status = serialized_name(&shown_status(&record.state, target));
    let id = &target.target.instance_id;
    json!({
        "deploymentTargetType": "InstanceTarget",
        "instanceTarget": {
            "deploymentId": record.spec.deployment_id,
            "targetId": id,
            "targetArn": format!(
                "arn:aws:codedeploy:{}:{}:instance/{id}",
                control.settings.region, control.settings.account_id
            ),
            "status": status,
            "lastUpdatedAt": time(last_updated),
            "lifecycleEvents": events,
            "instanceLabel": instance_label(&record.state, target.index),
        },
    })
}

/// StopDeployment.
/// StopDeployment. Returns CodeDeploy's `{status, statusMessage}`.
async fn stop(
    control: &ControlPlane,
    deployment_id: &str,
    auto_rollback_enabled: Option<bool>,
) -> Result<serde_json::Value, ApiError> {
    let record: DeploymentRecord<DeploymentSpec> = control
        .store
        .load_deployment(deployment_id)
        .await
        .map_err(|error| match error {
            StoreError::NotFound(_) => ApiError::deployment_missing(deployment_id),
            other => other.into(),
        })?;
    if record.state.status.is_terminal() {
        return Err(ApiError::new(
            Exception::DeploymentAlreadyCompleted,
            format!(
                "deployment {deployment_id} already ended with status {:?}",
                record.state.status
            ),
        ));
    }
    let rollback = auto_rollback_enabled.unwrap_or(false);
    let applied = effects::advance(
        control,
        deployment_id,
        &[Input::Stop {
            now: now_millis(),
            rollback,
        }],
    )
    .await?;
    // As CodeDeploy answers: Pending while hosts still finish the event they were
    // running (each was told to skip the rest), Succeeded once none is.
    let finishing = applied.record.state.counts().in_progress;
    let rolling_back = if rollback {
        "; rolling back to the last successful revision"
    } else {
        ""
    };
    Ok(if finishing > 0 {
        serde_json::json!({
            "status": "Pending",
            "statusMessage": format!(
                "Deployment {deployment_id} stopped{rolling_back}; {finishing} instance(s) are finishing their current lifecycle event and skip the rest"
            ),
        })
    } else {
        serde_json::json!({
            "status": "Succeeded",
            "statusMessage": format!("Deployment {deployment_id} stopped{rolling_back}"),
        })
    })
}

#[cfg(test)]
mod blue_green_tests {
    use super::*;

    #[test]
    fn parts_left_out_are_kept_or_codedeploys_defaults() {
        let given = json!({"deploymentReadyOption": {"actionOnTimeout": "STOP_DEPLOYMENT"}});
        let config = blue_green_configuration(&given, None).unwrap();
        let mut expected = blue_green_defaults();
        expected.deployment_ready_option.action_on_timeout = "STOP_DEPLOYMENT".into();
        assert_eq!(config, expected);

        let mut kept = blue_green_defaults();
        kept.green_fleet_provisioning_option.action = "COPY_AUTO_SCALING_GROUP".into();
        kept.deployment_ready_option.wait_time_in_minutes = 30;
        let given = json!({"terminateBlueInstancesOnDeploymentSuccess": {"action": "KEEP_ALIVE"}});
        let config = blue_green_configuration(&given, Some(&kept)).unwrap();
        let mut expected = kept.clone();
        expected
            .terminate_blue_instances_on_deployment_success
            .action = "KEEP_ALIVE".into();
        assert_eq!(config, expected);
    }

    #[test]
    fn errors_name_the_field_and_what_is_allowed() {
        for (given, field, allowed) in [
            (
                json!({"greenFleetProvisioningOption": {"action": "DISCOVER_EXISTING", "size": 3}}),
                "blueGreenDeploymentConfiguration.greenFleetProvisioningOption",
                "unknown field `size`",
            ),
            (
                json!({"deploymentReadyOption": {"waitTimeInMinutes": 1.5}}),
                "blueGreenDeploymentConfiguration.deploymentReadyOption.waitTimeInMinutes",
                "invalid type",
            ),
            (
                json!({"terminateBlueInstancesOnDeploymentSuccess": {"terminationWaitTimeInMinutes": 2881}}),
                "blueGreenDeploymentConfiguration.terminateBlueInstancesOnDeploymentSuccess.terminationWaitTimeInMinutes",
                "give 0 to 2880",
            ),
            (
                json!({"blueGreen": {}}),
                "blueGreenDeploymentConfiguration",
                "unknown field `blueGreen`",
            ),
        ] {
            let error = blue_green_configuration(&given, None).unwrap_err();
            assert_eq!(
                error.code,
                Exception::InvalidBlueGreenDeploymentConfiguration
            );
            assert!(
                error.message.starts_with(field) && error.message.contains(allowed),
                "{given}: {}",
                error.message
            );
        }
    }
}
