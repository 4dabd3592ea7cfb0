//! Attribute values in and out of items, and the SDK's errors as [`StoreError`]s.

use super::{Item, StoreError};
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn json<T: Serialize>(value: &T) -> AttributeValue {
    s(serde_json::to_string(value).expect("stored values always serialize"))
}

/// Most a body an API caller shapes (a group's settings, an application, an instance) may
/// take stored: DynamoDB's 400 KB per item, less room for the item's keys and other
/// attributes.
pub const MAX_BODY_BYTES: usize = 350 * 1024;

/// Most a deployment's spec may take stored. It shares the summary item with the state
/// machine's summary and is read with every report, so it is kept far below an item;
/// real ones take a few KB.
pub const MAX_SPEC_BYTES: usize = 64 * 1024;

/// `value` as a stored body, refused when it would not fit in one item; the refusal names
/// its largest field, which is what the caller should shrink.
pub(super) fn body<T: Serialize>(value: &T, what: &str) -> Result<AttributeValue, StoreError> {
    bounded(value, what, MAX_BODY_BYTES)
}

/// `value` as stored JSON, refused when over `limit` bytes, naming its largest field.
pub(super) fn bounded<T: Serialize>(
    value: &T,
    what: &str,
    limit: usize,
) -> Result<AttributeValue, StoreError> {
    let text = serde_json::to_string(value).expect("stored values always serialize");
    if text.len() <= limit {
        return Ok(s(text));
    }
    let largest = match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(fields)) => fields
            .iter()
            .map(|(name, field)| (field.to_string().len(), name.clone()))
            .max()
            .map(|(bytes, name)| format!("; its largest field is {name} ({bytes} bytes)")),
        _ => None,
    };
    Err(StoreError::TooLarge(format!(
        "{what}: too large to store ({} bytes; at most {limit}){}",
        text.len(),
        largest.unwrap_or_default()
    )))
}

/// An enum's serialized name (`"InProgress"`), as a plain string attribute.
pub(super) fn json_name<T: Serialize>(value: &T) -> AttributeValue {
    s(crate::model::serialized_name(value))
}

pub(super) fn aws<E>(error: SdkError<E>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    StoreError::Aws(DisplayErrorContext(error).to_string())
}

/// Maps an SDK error to a domain error: a failed condition is a conflict, not a string.
/// A conditional write whose condition no longer holds has nothing left to do (someone
/// did it, or it no longer applies): done. Other failures are failures.
pub(super) fn done_unless_failed<T, E>(result: Result<T, SdkError<E>>) -> Result<(), StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result.map_err(|error| classify(error, String::new)) {
        Ok(_) | Err(StoreError::Conflict(_)) => Ok(()),
        Err(other) => Err(other),
    }
}

pub(super) fn classify<E>(error: SdkError<E>, conflict: impl FnOnce() -> String) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let SdkError::ServiceError(service) = &error
        && service.err().code() == Some("ConditionalCheckFailedException")
    {
        return StoreError::Conflict(conflict());
    }
    aws(error)
}

pub(super) fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|value| value.as_s().ok())
        .map(String::as_str)
}

pub(super) fn number(item: &Item, name: &str) -> Option<u64> {
    item.get(name)
        .and_then(|value| value.as_n().ok())
        .and_then(|value| value.parse().ok())
}

pub(super) fn decode<T: DeserializeOwned>(
    item: &Item,
    name: &str,
    what: &str,
) -> Result<T, StoreError> {
    let raw = text(item, name).ok_or_else(|| StoreError::Corrupt {
        what: what.to_owned(),
        message: format!("no {name}"),
    })?;
    serde_json::from_str(raw).map_err(|error| StoreError::Corrupt {
        what: what.to_owned(),
        message: format!("{name}: {error}"),
    })
}

pub(super) fn decode_optional<T: DeserializeOwned>(
    item: &Item,
    name: &str,
    what: &str,
) -> Result<Option<T>, StoreError> {
    match text(item, name) {
        None => Ok(None),
        Some(_) => decode(item, name, what).map(Some),
    }
}

pub(super) fn deployment_id_of(item: &Item) -> Option<String> {
    text(item, "pk")
        .and_then(|pk| pk.strip_prefix("DEPLOYMENT#"))
        .map(str::to_owned)
}
