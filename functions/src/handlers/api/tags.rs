//! Resource tags: TagResource, UntagResource and ListTagsForResource on applications,
//! deployment groups and deployment configurations, each named by its CodeDeploy ARN,
//! and the `tags` CreateApplication and CreateDeploymentGroup take.
//!
//! Tags are kept on the resource's own item, beside its body (`DynamoStore::tags`), so
//! deleting the resource deletes them, and tagging never races a change of the resource.

use super::paging::page;
use super::unknown_operation;
use crate::control::ControlPlane;
use crate::error::{ApiError, Exception};
use crate::model::Tag;
use crate::store::{StoreError, keys};
use gantry_api::tags::ListTagsForResourceOutput;
use gantry_core::config::DeploymentConfig;
use serde_json::{Value, json};

/// Tags one resource may have (AWS's limit).
pub const MAX_TAGS: usize = 50;
const MAX_KEY_CHARS: usize = 128;
const MAX_VALUE_CHARS: usize = 256;

/// TagResource, UntagResource, ListTagsForResource.
pub async fn operation(
    control: &ControlPlane,
    name: &str,
    input: Value,
) -> Result<Value, ApiError> {
    let arn = match input.get("ResourceArn").and_then(Value::as_str) {
        Some(arn) if !arn.is_empty() => arn,
        _ => {
            return Err(ApiError::new(
                Exception::ResourceArnRequired,
                "ResourceArn: is required",
            ));
        }
    };
    let resource = Resource::parse(arn, &control.settings.region, &control.settings.account_id)?;
    match name {
        "ListTagsForResource" => {
            let tags = match resource.stored_key() {
                Some((pk, sk)) => current(control, &resource, &pk, &sk).await?.0,
                None => {
                    resource.exists(control).await?;
                    Vec::new()
                }
            };
            // Tokens as every List operation's; one page holds all 50 tags.
            let token =
                json!({"nextToken": input.get("NextToken").cloned().unwrap_or(Value::Null)});
            let (tags, next) = page(tags, &token, |tag| tag.key.clone())?;
            Ok(json!(ListTagsForResourceOutput {
                tags,
                next_token: next,
            }))
        }
        "TagResource" => {
            let adding = tags_to_add(input.get("Tags"), "Tags")?;
            if adding.is_empty() {
                return Err(ApiError::new(Exception::TagRequired, "Tags: is required"));
            }
            change(control, &resource, |tags| add(tags, &adding)).await
        }
        "UntagResource" => {
            let keys = keys_to_remove(input.get("TagKeys"))?;
            change(control, &resource, |tags| {
                tags.retain(|tag| !keys.contains(&tag.key));
                Ok(())
            })
            .await
        }
        other => Err(unknown_operation(other)),
    }
}

/// The tags a Create operation gives in `field` (none is fine), checked as TagResource
/// checks them.
pub fn creation_tags(input: &Value, field: &str) -> Result<Vec<Tag>, ApiError> {
    let tags = tags_to_add(input.get(field), field)?;
    add(&mut Vec::new(), &tags)?;
    Ok(tags)
}

/// A resource that takes tags, as its ARN names it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resource {
    Application(String),
    DeploymentGroup { application: String, group: String },
    DeploymentConfig(String),
}

impl Resource {
    /// `arn:aws:codedeploy:REGION:ACCOUNT:application:NAME`,
    /// `...:deploymentgroup:APPLICATION/GROUP` or `...:deploymentconfig:NAME`, in this
    /// Gantry's region and account. A group's ARN splits at its first `/`.
    fn parse(arn: &str, region: &str, account: &str) -> Result<Self, ApiError> {
        let invalid = |why: String| {
            ApiError::new(Exception::InvalidArn, format!("ResourceArn: {arn:?} {why}"))
        };
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [
            prefix,
            partition,
            service,
            arn_region,
            arn_account,
            resource,
        ] = parts[..]
        else {
            return Err(invalid(
                "is not an ARN (arn:aws:codedeploy:REGION:ACCOUNT:TYPE:NAME)".into(),
            ));
        };
        if prefix != "arn" || partition != "aws" || service != "codedeploy" {
            return Err(invalid(
                "is not a CodeDeploy ARN (arn:aws:codedeploy:...)".into(),
            ));
        }
        if arn_region != region || arn_account != account {
            return Err(invalid(format!(
                "names region {arn_region:?} and account {arn_account:?}; this Gantry serves region {region} in account {account}"
            )));
        }
        let Some((kind, name)) = resource.split_once(':') else {
            return Err(invalid("names no resource type and name".into()));
        };
        if name.is_empty() {
            return Err(invalid("names no resource".into()));
        }
        match kind {
            "application" => Ok(Self::Application(name.to_owned())),
            "deploymentconfig" => Ok(Self::DeploymentConfig(name.to_owned())),
            "deploymentgroup" => match name.split_once('/') {
                Some((application, group)) if !application.is_empty() && !group.is_empty() => {
                    Ok(Self::DeploymentGroup {
                        application: application.to_owned(),
                        group: group.to_owned(),
                    })
                }
                _ => Err(invalid(
                    "names no group: a deployment group's ARN ends in deploymentgroup:APPLICATION/GROUP".into(),
                )),
            },
            other => Err(ApiError::new(
                Exception::ArnNotSupported,
                format!(
                    "ResourceArn: {arn:?} names a {other}; tags are kept for applications, deployment groups and deployment configurations"
                ),
            )),
        }
    }

    /// Where the resource's item is; `None` for a predefined configuration, which is
    /// CodeDeploy's and has no item (nor tags).
    fn stored_key(&self) -> Option<(String, String)> {
        match self {
            Self::Application(name) => Some((keys::APPLICATIONS.to_owned(), name.clone())),
            Self::DeploymentGroup { application, group } => {
                Some((keys::groups(application), group.clone()))
            }
            Self::DeploymentConfig(name) => DeploymentConfig::predefined(name)
                .is_none()
                .then(|| (keys::CONFIGS.to_owned(), name.clone())),
        }
    }

    fn missing(&self) -> ApiError {
        match self {
            Self::Application(name) => ApiError::new(
                Exception::ApplicationDoesNotExist,
                format!("ResourceArn: no application named {name:?}"),
            ),
            Self::DeploymentGroup { application, group } => ApiError::new(
                Exception::DeploymentGroupDoesNotExist,
                format!(
                    "ResourceArn: application {application:?} has no deployment group named {group:?}"
                ),
            ),
            Self::DeploymentConfig(name) => ApiError::new(
                Exception::DeploymentConfigDoesNotExist,
                format!("ResourceArn: no deployment configuration named {name:?}"),
            ),
        }
    }

    /// A resource without an item exists if it is predefined.
    async fn exists(&self, control: &ControlPlane) -> Result<(), ApiError> {
        match self.stored_key() {
            None => Ok(()),
            Some((pk, sk)) => current(control, self, &pk, &sk).await.map(|_| ()),
        }
    }
}

/// The resource's tags and their version.
async fn current(
    control: &ControlPlane,
    resource: &Resource,
    pk: &str,
    sk: &str,
) -> Result<(Vec<Tag>, u64), ApiError> {
    let stored = control
        .store
        .tags::<Tag>(pk, sk)
        .await?
        .ok_or_else(|| resource.missing())?;
    Ok((stored.value, stored.version))
}

/// Read, change and write the resource's tags, conditional on their version; retried
/// when they changed meanwhile.
async fn change(
    control: &ControlPlane,
    resource: &Resource,
    apply: impl Fn(&mut Vec<Tag>) -> Result<(), ApiError>,
) -> Result<Value, ApiError> {
    let Some((pk, sk)) = resource.stored_key() else {
        return Err(ApiError::new(
            Exception::ArnNotSupported,
            "ResourceArn: a predefined deployment configuration belongs to CodeDeploy and takes no tags",
        ));
    };
    for _ in 0..8 {
        let (mut tags, version) = current(control, resource, &pk, &sk).await?;
        let before = tags.clone();
        apply(&mut tags)?;
        if tags == before {
            return Ok(json!({}));
        }
        match control.store.set_tags(&pk, &sk, &tags, version).await {
            Ok(_) => return Ok(json!({})),
            Err(StoreError::Conflict(_)) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(ApiError::new(
        Exception::ConcurrentModification,
        "ResourceArn: the resource's tags kept changing; try again",
    ))
}

/// Adds `adding` to `tags`, a tag with a key already there replacing it in place.
fn add(tags: &mut Vec<Tag>, adding: &[Tag]) -> Result<(), ApiError> {
    for tag in adding {
        match tags.iter_mut().find(|have| have.key == tag.key) {
            Some(have) => have.value = tag.value.clone(),
            None => tags.push(tag.clone()),
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(ApiError::new(
            Exception::TagLimitExceeded,
            format!(
                "Tags: a resource may have at most {MAX_TAGS} tags; this would give it {}",
                tags.len()
            ),
        ));
    }
    Ok(())
}

/// `[{"Key": ..., "Value": ...}]` (Value may be left out: empty), each by AWS's rules;
/// none if the field is absent.
fn tags_to_add(value: Option<&Value>, field: &str) -> Result<Vec<Tag>, ApiError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(ApiError::new(
                Exception::InvalidTag,
                format!("{field}: must be a list of {{\"Key\": ..., \"Value\": ...}}"),
            ));
        }
    };
    let mut tags: Vec<Tag> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let tag: Tag = serde_json::from_value(item.clone()).map_err(|_| {
            ApiError::new(
                Exception::InvalidTag,
                format!("{field}[{index}]: must be {{\"Key\": string, \"Value\": string}}"),
            )
        })?;
        check_key(&tag.key)
            .and_then(|()| check_value(&tag.value))
            .map_err(|why| {
                ApiError::new(
                    Exception::InvalidTagsToAdd,
                    format!("{field}[{index}]: {why}"),
                )
            })?;
        if tags.iter().any(|have| have.key == tag.key) {
            return Err(ApiError::new(
                Exception::InvalidTagsToAdd,
                format!("{field}[{index}]: key {:?} is given twice", tag.key),
            ));
        }
        tags.push(tag);
    }
    Ok(tags)
}

/// UntagResource's `TagKeys`: at least one, each a key a tag could have.
fn keys_to_remove(value: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let keys: Vec<String> = match value {
        None | Some(Value::Null) => Vec::new(),
        Some(value) => serde_json::from_value(value.clone()).map_err(|_| {
            ApiError::new(Exception::InvalidTag, "TagKeys: must be a list of strings")
        })?,
    };
    if keys.is_empty() {
        return Err(ApiError::new(
            Exception::TagRequired,
            "TagKeys: is required",
        ));
    }
    for (index, key) in keys.iter().enumerate() {
        check_key(key).map_err(|why| {
            ApiError::new(Exception::InvalidTag, format!("TagKeys[{index}]: {why}"))
        })?;
    }
    Ok(keys)
}

/// Letters, digits and spaces in any script, and `_ . : / = + - @`.
fn allowed(c: char) -> bool {
    c.is_alphanumeric() || (c.is_whitespace() && !c.is_control()) || "_.:/=+-@".contains(c)
}

fn check_key(key: &str) -> Result<(), String> {
    let chars = key.chars().count();
    if chars == 0 || chars > MAX_KEY_CHARS {
        return Err(format!(
            "a key is 1 to {MAX_KEY_CHARS} characters, found {chars}"
        ));
    }
    if key
        .get(..4)
        .is_some_and(|start| start.eq_ignore_ascii_case("aws:"))
    {
        return Err(format!("key {key:?}: the aws: prefix is reserved for AWS"));
    }
    if let Some(bad) = key.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "key {key:?} has {bad:?}; keys and values are letters, digits, spaces and _ . : / = + - @"
        ));
    }
    Ok(())
}

fn check_value(value: &str) -> Result<(), String> {
    let chars = value.chars().count();
    if chars > MAX_VALUE_CHARS {
        return Err(format!(
            "a value is at most {MAX_VALUE_CHARS} characters, found {chars}"
        ));
    }
    if let Some(bad) = value.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "value {value:?} has {bad:?}; keys and values are letters, digits, spaces and _ . : / = + - @"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGION: &str = "us-east-1";
    const ACCOUNT: &str = "123456789012";

    fn parse(arn: &str) -> Result<Resource, Exception> {
        Resource::parse(arn, REGION, ACCOUNT).map_err(|error| error.code)
    }

    #[test]
    fn arns_name_applications_groups_and_configs_of_this_region_and_account() {
        let arn = |rest: &str| format!("arn:aws:codedeploy:{REGION}:{ACCOUNT}:{rest}");
        assert_eq!(
            parse(&arn("application:shop")),
            Ok(Resource::Application("shop".into()))
        );
        assert_eq!(
            parse(&arn("deploymentgroup:shop/web/blue")),
            Ok(Resource::DeploymentGroup {
                application: "shop".into(),
                group: "web/blue".into()
            })
        );
        assert_eq!(
            parse(&arn("deploymentconfig:Two:Healthy")),
            Ok(Resource::DeploymentConfig("Two:Healthy".into()))
        );
        for bad in [
            "shop".to_owned(),
            arn("application:"),
            arn("deploymentgroup:shop"),
            arn("deploymentgroup:/web"),
            format!("arn:aws:s3:{REGION}:{ACCOUNT}:application:shop"),
            format!("arn:aws:codedeploy:eu-west-1:{ACCOUNT}:application:shop"),
            format!("arn:aws:codedeploy:{REGION}:999999999999:application:shop"),
        ] {
            assert_eq!(parse(&bad), Err(Exception::InvalidArn), "{bad}");
        }
        assert_eq!(
            parse(&arn("instance:host-1")),
            Err(Exception::ArnNotSupported)
        );
    }

    fn codes(value: Value) -> Result<Vec<Tag>, Exception> {
        tags_to_add(Some(&value), "Tags").map_err(|error| error.code)
    }

    #[test]
    fn tags_follow_aws_rules() {
        assert_eq!(
            codes(json!([{"Key": "team", "Value": "café ops"}, {"Key": "a:b/c=d+e-f@g_h.i"}])),
            Ok(vec![
                Tag {
                    key: "team".into(),
                    value: "café ops".into()
                },
                Tag {
                    key: "a:b/c=d+e-f@g_h.i".into(),
                    value: String::new()
                },
            ])
        );
        assert_eq!(
            codes(json!([{"Key": "k".repeat(128)}])).map(|t| t.len()),
            Ok(1)
        );
        assert_eq!(
            codes(json!([{"Key": "k", "Value": "v".repeat(256)}])).map(|t| t.len()),
            Ok(1)
        );
        for bad in [
            json!([{"Key": ""}]),
            json!([{"Key": "k".repeat(129)}]),
            json!([{"Key": "k", "Value": "v".repeat(257)}]),
            json!([{"Key": "AWS:owner", "Value": "me"}]),
            json!([{"Key": "semi;colon"}]),
            json!([{"Key": "k", "Value": "new\nline"}]),
            json!([{"Key": "k"}, {"Key": "k", "Value": "again"}]),
        ] {
            assert_eq!(
                codes(bad.clone()),
                Err(Exception::InvalidTagsToAdd),
                "{bad}"
            );
        }
        for bad in [
            json!({"Key": "k"}),
            json!([{"Value": "v"}]),
            json!([{"Key": 1}]),
        ] {
            assert_eq!(codes(bad.clone()), Err(Exception::InvalidTag), "{bad}");
        }
    }

    #[test]
    fn adding_replaces_a_key_in_place_and_stops_at_fifty() {
        let tag = |key: &str, value: &str| Tag {
            key: key.into(),
            value: value.into(),
        };
        let mut tags = vec![tag("a", "1"), tag("b", "2")];
        add(&mut tags, &[tag("a", "3"), tag("c", "4")]).unwrap();
        assert_eq!(tags, vec![tag("a", "3"), tag("b", "2"), tag("c", "4")]);
        let many: Vec<Tag> = (0..47).map(|i| tag(&format!("k{i}"), "")).collect();
        add(&mut tags, &many).unwrap();
        assert_eq!(tags.len(), 50);
        let error = add(&mut tags, &[tag("one-more", "")]).unwrap_err();
        assert_eq!(error.code, Exception::TagLimitExceeded);
    }

    #[test]
    fn untagging_needs_keys() {
        let code = |value: Value| keys_to_remove(Some(&value)).map_err(|error| error.code);
        assert_eq!(code(json!(["a", "b"])), Ok(vec!["a".into(), "b".into()]));
        assert_eq!(code(json!([])), Err(Exception::TagRequired));
        assert_eq!(
            keys_to_remove(None).unwrap_err().code,
            Exception::TagRequired
        );
        assert_eq!(code(json!([""])), Err(Exception::InvalidTag));
        assert_eq!(code(json!("a")), Err(Exception::InvalidTag));
    }
}
