//! Paging for List operations: tokens that name the last item of a page, not a position.

use crate::error::{ApiError, Exception};
use serde_json::Value;

/// Items per page of a List operation.
pub(super) const PAGE_SIZE: usize = 100;

/// One page of `items`, which are in their listing order: those after the item that
/// `nextToken` names (the key of the last item of the page before), and the token for
/// the next page if there is one. Tokens name an item, not a position, so what is added
/// before it between two calls is neither missed nor repeated.
pub(super) fn page<T>(
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
pub(super) fn page_start<T>(
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

pub(super) fn encode_token(key: &str) -> String {
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
