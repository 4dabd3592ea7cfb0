//! On-premises instances: Register, Deregister, tags, Get, BatchGet, List.

use super::paging::page;
use super::{batch_names, name_field, names_field, unknown_operation};
use crate::control::ControlPlane;
use crate::error::{ApiError, Exception};
use crate::model::{OnPremisesInstance, Tag, now_millis, seconds};
use crate::store::{StoreError, keys};
use gantry_api::instance::ListOnPremisesInstancesOutput;
use gantry_core::identity::IamIdentity;
use serde_json::{Value, json};

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

/// On-premises instances and their tags.
pub(super) async fn on_premises_instances(
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
            // The agent long-polls its queue from the start, and only its identity may.
            let sender_id = info.sender_id.as_deref().unwrap_or_default();
            control.queues.bind_sender(&instance, sender_id).await?;
            Ok(json!({}))
        }
        "DeregisterOnPremisesInstance" => {
            let instance = name_field(&input, "instanceName", Exception::InstanceNameRequired)?;
            // CodeDeploy's model documents InvalidInstanceName, not InstanceNotRegistered,
            // for this operation.
            update_instance(control, &instance, |info| {
                info.deregister_time.get_or_insert(seconds(now_millis()));
            })
            .await
            .map_err(|error| match error.code {
                Exception::InstanceNotRegistered => {
                    ApiError::new(Exception::InvalidInstanceName, error.message)
                }
                _ => error,
            })?;
            // Its identity may serve a new instance, and no longer reads this one's queue.
            control.queues.unbind_sender(&instance).await?;
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
            // As CodeDeploy: the instances found; names not registered are left out. At
            // most 25 names, as its model documents.
            let mut infos = Vec::new();
            for instance in batch_names(&input, "instanceNames", 25)? {
                match get_instance(control, &instance).await {
                    Ok(info) => infos.push(info),
                    Err(error) if error.code == Exception::InstanceNotRegistered => {}
                    Err(error) => return Err(error),
                }
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
            Ok(json!(ListOnPremisesInstancesOutput {
                instance_names: names,
                next_token: next,
            }))
        }
        other => Err(unknown_operation(other)),
    }
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
