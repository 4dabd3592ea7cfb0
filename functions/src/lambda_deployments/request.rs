//! CreateDeployment for a Lambda application's group: the revision read (the AppSpec as an
//! `AppSpecContent` or `String` revision, or a YAML or JSON file in S3) and checked, the
//! group's traffic routing, and the alias checked to stand where the AppSpec says it does,
//! before anything is stored.

use super::{LambdaSpec, create};
use crate::control::ControlPlane;
use crate::error::{ApiError, Exception, parse_input};
use crate::model::{AlarmConfiguration, AutoRollbackConfiguration, is_blank};
use crate::store::GroupRecord;
use gantry_api::deployment::CreateDeploymentOutput;
use gantry_api::lambda::{LambdaRevision, RawString};
use gantry_api::model::DeploymentGroupSettings;
use gantry_core::appspec::{self, AppSpecKind};
use gantry_core::lambda::{AliasShift, Hooks};
use gantry_core::wire::Creator;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The longest AppSpec a Lambda revision may be: a Lambda AppSpec names one function and
/// two hooks, so this is generous, and it keeps the revision inside the deployment's item.
pub const MAX_APPSPEC_BYTES: usize = 16 * 1024;

/// CreateDeployment's input for a Lambda application's group: CodeDeploy's members; those
/// about instances are refused when given.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LambdaCreateDeploymentInput {
    application_name: String,
    deployment_group_name: String,
    #[serde(default)]
    revision: Option<LambdaRevision>,
    #[serde(default)]
    deployment_config_name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    ignore_application_stop_failures: bool,
    #[serde(default)]
    target_instances: Option<Value>,
    #[serde(default)]
    auto_rollback_configuration: Option<AutoRollbackConfiguration>,
    #[serde(default)]
    update_outdated_instances_only: bool,
    #[serde(default)]
    file_exists_behavior: Option<String>,
    #[serde(default)]
    override_alarm_configuration: Option<Value>,
    #[serde(default)]
    deployment_mode: Option<String>,
    #[serde(default)]
    ec2_deployment_options: Option<Value>,
}

/// CreateDeployment of `group`, a Lambda application's: checks everything, then creates
/// and starts the deployment ([`create`]).
pub async fn create_deployment(
    control: &ControlPlane,
    group: &GroupRecord<DeploymentGroupSettings>,
    input: Value,
) -> Result<CreateDeploymentOutput, ApiError> {
    let input: LambdaCreateDeploymentInput = parse_input("CreateDeployment", input)?;
    let settings = &group.settings.value;
    crate::model::check_description(input.description.as_deref())?;
    refuse_instance_members(&input)?;
    if input
        .deployment_mode
        .as_deref()
        .is_some_and(|mode| mode == "RESTART")
    {
        return Err(ApiError::invalid_input(
            "deploymentMode: RESTART applies to EC2/On-premises in-place deployments, not to Lambda ones",
        ));
    }
    crate::deploy::check_deployment_mode(input.deployment_mode.as_deref())?;
    crate::deploy::check_ec2_deployment_options(input.ec2_deployment_options.as_ref())?;
    let revision = input.revision.clone().ok_or_else(|| {
        ApiError::new(
            Exception::RevisionRequired,
            "revision: is required: the AppSpec, as revisionType AppSpecContent (appSpecContent.content) or S3 (a YAML or JSON file)",
        )
    })?;
    let (text, revision) = read_appspec(control, revision).await?;
    let spec = parse_appspec(&text)?;
    let hooks = Hooks {
        before_allow_traffic: spec.before_allow_traffic.clone(),
        after_allow_traffic: spec.after_allow_traffic.clone(),
    };
    check_hook_names(control, &hooks)?;
    let function = &spec.function;
    check_own_function(control, "Resources Properties.Name", &function.name)?;
    let alias = AliasShift {
        function_name: function.name.clone(),
        alias: function.alias.clone(),
        current_version: function.current_version.to_string(),
        target_version: function.target_version.to_string(),
    };
    check_alias(control, &alias).await?;
    let config_name = input
        .deployment_config_name
        .clone()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| settings.deployment_config_name.clone());
    let routing = control.lambda_routing(&config_name).await?;
    let override_alarms = match input.override_alarm_configuration.clone() {
        Some(value) if !is_blank(&value) => Some(
            AlarmConfiguration::from_input("overrideAlarmConfiguration", value)
                .map_err(crate::deploy::alarm_error)?,
        ),
        _ => None,
    };
    let alarms = override_alarms
        .clone()
        .unwrap_or_else(|| settings.alarm_configuration.clone());
    let auto_rollback = input
        .auto_rollback_configuration
        .clone()
        .unwrap_or_else(|| settings.auto_rollback_configuration.clone());
    auto_rollback
        .validate()
        .map_err(|message| ApiError::new(Exception::InvalidAutoRollbackConfig, message))?;
    let lambda_spec = LambdaSpec {
        deployment_id: crate::deploy::new_deployment_id(),
        application_name: input.application_name.clone(),
        deployment_group_name: input.deployment_group_name.clone(),
        deployment_config_name: config_name,
        alarms: if alarms.watches() {
            alarms.names()
        } else {
            Vec::new()
        },
        revision: Some(revision),
        description: input.description.clone().filter(|d| !d.is_empty()),
        creator: Creator::User,
        auto_rollback_configuration: auto_rollback,
        trigger_configurations: settings.trigger_configurations.clone(),
        ignore_poll_alarm_failure: alarms.ignore_poll_alarm_failure,
        override_alarm_configuration: override_alarms,
    };
    let record = Box::pin(create(control, lambda_spec, alias, routing, &hooks)).await?;
    Ok(CreateDeploymentOutput {
        deployment_id: record.spec.deployment_id,
    })
}

/// Members of CreateDeployment that are about instances: a Lambda deployment has none.
fn refuse_instance_members(input: &LambdaCreateDeploymentInput) -> Result<(), ApiError> {
    if input
        .target_instances
        .as_ref()
        .is_some_and(|v| !is_blank(v))
    {
        return Err(ApiError::new(
            Exception::InvalidTargetInstances,
            "targetInstances: names the replacement instances of an EC2 blue/green deployment; a Lambda deployment moves the alias its AppSpec names, so leave it out",
        ));
    }
    let instance_only = [
        (
            "ignoreApplicationStopFailures",
            input.ignore_application_stop_failures,
        ),
        (
            "updateOutdatedInstancesOnly",
            input.update_outdated_instances_only,
        ),
        (
            "fileExistsBehavior",
            input
                .file_exists_behavior
                .as_deref()
                .is_some_and(|b| !b.is_empty()),
        ),
    ];
    if let Some((member, _)) = instance_only.iter().find(|(_, given)| *given) {
        return Err(ApiError::invalid_input(format!(
            "{member}: applies to EC2/On-premises instances; a Lambda deployment has none, so leave it out"
        )));
    }
    Ok(())
}

/// The AppSpec's text, and the revision as it is stored: an S3 file pinned to the
/// version and ETag read.
async fn read_appspec(
    control: &ControlPlane,
    revision: LambdaRevision,
) -> Result<(String, LambdaRevision), ApiError> {
    match revision {
        LambdaRevision::AppSpecContent { app_spec_content } => {
            let app_spec_content = checked_raw("revision.appSpecContent", app_spec_content)?;
            let text = app_spec_content.content.clone();
            Ok((text, LambdaRevision::AppSpecContent { app_spec_content }))
        }
        LambdaRevision::String { string } => {
            let string = checked_raw("revision.string", string)?;
            let text = string.content.clone();
            Ok((text, LambdaRevision::String { string }))
        }
        LambdaRevision::S3 { s3_location } => {
            if !["YAML", "JSON"].contains(&s3_location.bundle_type.as_str()) {
                return Err(ApiError::new(
                    Exception::InvalidRevision,
                    format!(
                        "revision.s3Location.bundleType: {:?}; a Lambda deployment's revision is an AppSpec file, YAML or JSON",
                        s3_location.bundle_type
                    ),
                ));
            }
            control.check_s3_revision(&s3_location.bucket, &s3_location.key)?;
            let (text, pinned) = control
                .bundles
                .read_appspec(&s3_location, MAX_APPSPEC_BYTES)
                .await?;
            Ok((
                text,
                LambdaRevision::S3 {
                    s3_location: pinned,
                },
            ))
        }
    }
}

/// An AppSpec given as a string: not empty, not too long, and its SHA-256 as given;
/// kept with its SHA-256 (GetDeployment shows it, given or not).
fn checked_raw(field: &str, raw: RawString) -> Result<RawString, ApiError> {
    let invalid = |message: String| ApiError::new(Exception::InvalidRevision, message);
    if raw.content.trim().is_empty() {
        return Err(invalid(format!(
            "{field}.content: is empty; give the AppSpec"
        )));
    }
    if raw.content.len() > MAX_APPSPEC_BYTES {
        return Err(invalid(format!(
            "{field}.content: {} bytes; an AppSpec has at most {MAX_APPSPEC_BYTES}",
            raw.content.len()
        )));
    }
    let actual = sha256_hex(raw.content.as_bytes());
    if let Some(given) = raw.sha256.as_deref().filter(|s| !s.is_empty())
        && !given.eq_ignore_ascii_case(&actual)
    {
        return Err(invalid(format!(
            "{field}.sha256: {given} is not the SHA-256 of the content ({actual})"
        )));
    }
    Ok(RawString {
        content: raw.content,
        sha256: Some(actual),
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The Lambda AppSpec, or every problem with it, each naming its field.
fn parse_appspec(text: &str) -> Result<appspec::lambda::LambdaAppSpec, ApiError> {
    if appspec::detect(text) == AppSpecKind::Ec2OnPremises {
        return Err(ApiError::new(
            Exception::InvalidRevision,
            "revision: this is an EC2/On-premises AppSpec (files, hooks of instances); a Lambda application's deployment needs a Lambda AppSpec: Resources naming the function's Name, Alias, CurrentVersion and TargetVersion",
        ));
    }
    appspec::lambda::parse(text).map_err(|problems| {
        ApiError::new(
            Exception::InvalidRevision,
            format!("revision: the AppSpec is not valid: {problems}"),
        )
    })
}

/// Hook functions must be named with the stack's prefix: the functions may invoke no
/// others.
fn check_hook_names(control: &ControlPlane, hooks: &Hooks) -> Result<(), ApiError> {
    let Some(prefix) = &control.settings.lambda_hook_prefix else {
        for function in [&hooks.before_allow_traffic, &hooks.after_allow_traffic]
            .into_iter()
            .flatten()
        {
            check_own_function(control, "Hooks", function)?;
        }
        return Ok(());
    };
    for (event, function) in [
        ("BeforeAllowTraffic", &hooks.before_allow_traffic),
        ("AfterAllowTraffic", &hooks.after_allow_traffic),
    ] {
        let Some(function) = function else { continue };
        check_own_function(control, &format!("Hooks {event}"), function)?;
        if !bare_function_name(function).starts_with(prefix.as_str()) {
            return Err(ApiError::new(
                Exception::InvalidRevision,
                format!(
                    "revision: Hooks {event}: {function:?} is not named {prefix}...; this Gantry may invoke only hook functions whose names start with {prefix:?} (the template's LambdaHookPrefix)"
                ),
            ));
        }
    }
    Ok(())
}

/// A function named by ARN must be this account's, in this Region: Gantry moves and
/// invokes no one else's.
fn check_own_function(control: &ControlPlane, field: &str, function: &str) -> Result<(), ApiError> {
    let settings = &control.settings;
    let parts: Vec<&str> = function.split(':').collect();
    let (region, account) = match parts.as_slice() {
        ["arn", _, "lambda", region, account, "function", ..] => (Some(*region), *account),
        [account, "function", ..] => (None, *account),
        _ => return Ok(()),
    };
    let foreign_region = region.is_some_and(|region| region != settings.region);
    if account != settings.account_id || foreign_region {
        return Err(ApiError::new(
            Exception::InvalidRevision,
            format!(
                "revision: {field}: {function:?} is a function of account {account}{}; Gantry moves and invokes only functions of account {} in {}",
                region.map(|r| format!(" in {r}")).unwrap_or_default(),
                settings.account_id,
                settings.region
            ),
        ));
    }
    Ok(())
}

/// A function's name out of a name, a partial or full ARN, perhaps qualified.
fn bare_function_name(function: &str) -> &str {
    let parts: Vec<&str> = function.split(':').collect();
    match parts.iter().position(|part| *part == "function") {
        Some(at) => parts.get(at + 1).copied().unwrap_or(function),
        None => parts[0],
    }
}

/// The alias must stand on CurrentVersion with no traffic routed elsewhere, and
/// TargetVersion must be published: otherwise the deployment would shift from, or to,
/// something other than what its AppSpec says.
async fn check_alias(control: &ControlPlane, alias: &AliasShift) -> Result<(), ApiError> {
    let invalid = |message: String| ApiError::new(Exception::InvalidRevision, message);
    let named = format!("alias {} of {}", alias.alias, alias.function_name);
    let found = control
        .aliases
        .alias(&alias.function_name, &alias.alias)
        .await
        .map_err(|error| match error.code {
            Exception::ResourceNotFound => invalid(format!(
                "revision: the AppSpec's {named} does not exist in Lambda"
            )),
            _ => error,
        })?;
    if found.version != alias.current_version {
        return Err(invalid(format!(
            "revision: the AppSpec's CurrentVersion is {}, but the {named} points at version {}; give CurrentVersion {}",
            alias.current_version, found.version, found.version
        )));
    }
    let routed: Vec<String> = found
        .weights
        .iter()
        .filter(|(_, weight)| **weight > 0.0)
        .map(|(version, weight)| format!("version {version} ({:.0}%)", weight * 100.0))
        .collect();
    if !routed.is_empty() {
        return Err(invalid(format!(
            "revision: the {named} already routes traffic to {}; another shift is under way or was left half done",
            routed.join(", ")
        )));
    }
    if alias.target_version == alias.current_version {
        return Err(invalid(format!(
            "revision: TargetVersion and CurrentVersion are both {}; there is no traffic to move",
            alias.target_version
        )));
    }
    if !control
        .aliases
        .has_version(&alias.function_name, &alias.target_version)
        .await?
    {
        return Err(invalid(format!(
            "revision: the AppSpec's TargetVersion {} of {} is not a published version",
            alias.target_version, alias.function_name
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hooks_bare_name_comes_out_of_names_and_arns() {
        assert_eq!(
            bare_function_name("CodeDeployHook_pre"),
            "CodeDeployHook_pre"
        );
        assert_eq!(
            bare_function_name("CodeDeployHook_pre:live"),
            "CodeDeployHook_pre"
        );
        assert_eq!(
            bare_function_name(
                "arn:aws:lambda:us-east-1:123456789012:function:CodeDeployHook_pre:3"
            ),
            "CodeDeployHook_pre"
        );
        assert_eq!(
            bare_function_name("123456789012:function:CodeDeployHook_pre"),
            "CodeDeployHook_pre"
        );
    }

    #[test]
    fn a_given_sha256_must_be_the_contents_and_one_is_kept_always() {
        let content = "version: 0.0\n".to_owned();
        let good = RawString {
            sha256: Some(sha256_hex(content.as_bytes()).to_uppercase()),
            content: content.clone(),
        };
        let kept = checked_raw("revision.appSpecContent", good).unwrap();
        assert_eq!(kept.sha256, Some(sha256_hex(content.as_bytes())));
        let bad = RawString {
            sha256: Some("00".repeat(32)),
            content: content.clone(),
        };
        let error = checked_raw("revision.appSpecContent", bad).unwrap_err();
        assert!(
            error
                .message
                .starts_with("revision.appSpecContent.sha256: "),
            "{error}"
        );
        let empty = RawString {
            content: " \n".into(),
            sha256: None,
        };
        checked_raw("revision.string", empty).unwrap_err();
        // Not given: GetDeployment shows it all the same.
        let bare = RawString {
            content: content.clone(),
            sha256: None,
        };
        let kept = checked_raw("revision.string", bare).unwrap();
        assert_eq!(kept.sha256, Some(sha256_hex(content.as_bytes())));
    }
}
