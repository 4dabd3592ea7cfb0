//! Lambda's names as a Lambda appspec gives them: function names and ARNs (qualified or
//! not), alias names and published versions, each checked by Lambda's own rules.

use super::{
    MAX_ALIAS_LEN, MAX_FUNCTION_NAME_LEN, MAX_FUNCTION_REF_LEN, MAX_QUALIFIED_FUNCTION_REF_LEN,
};

/// The parts of a function's full ARN,
/// `arn:<partition>:lambda:<region>:<account>:function:<name>[:<qualifier>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionArn<'a> {
    pub partition: &'a str,
    pub region: &'a str,
    pub account: &'a str,
}

/// A Lambda function as an appspec names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionRef<'a> {
    /// The function's name.
    pub name: &'a str,
    /// Where the function is, when it was named by its ARN.
    pub arn: Option<FunctionArn<'a>>,
    /// The alias or version (or `$LATEST`) after the name, if any.
    pub qualifier: Option<&'a str>,
}

/// Whether a function reference may carry an alias or version qualifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qualifier {
    /// `Name`: the alias to shift is given on its own, in `Alias`.
    Refused,
    /// Hooks: Lambda's Invoke runs the alias or version a qualified name gives.
    Allowed,
}

/// Checks a function reference: a name, a full ARN, and when `qualifier` allows, either
/// with `:<alias>`, `:<version>` or `:$LATEST` after it.
///
/// The rules are the AWS Lambda API reference's for `FunctionName` (CreateFunction,
/// UpdateAlias, Invoke): pattern
/// `(arn:(aws[a-zA-Z-]*)?:lambda:)?((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?(\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?`,
/// a name alone at most 64 characters, the whole at most 140 characters (the
/// reference's GetAlias and CreateAlias pages). Invoke, which takes a qualifier, allows
/// 170 characters (from memory of its page, not checked against it). Here an ARN must be
/// whole: partition, region and account all given.
pub fn check_function(reference: &str, qualifier: Qualifier) -> Result<FunctionRef<'_>, String> {
    let forms = match qualifier {
        Qualifier::Refused => {
            "a function name (1 to 64 letters, digits, hyphens or underscores) or a function ARN (arn:aws:lambda:<region>:<account>:function:<name>)"
        }
        Qualifier::Allowed => {
            "a function name (1 to 64 letters, digits, hyphens or underscores) or a function ARN (arn:aws:lambda:<region>:<account>:function:<name>), either optionally followed by :<alias>, :<version> or :$LATEST"
        }
    };
    let wrong =
        |why: &str| format!("{reference:?} is not a Lambda function: {why}; expected {forms}");
    let parts: Vec<&str> = reference.split(':').collect();
    let (name, arn, found_qualifier) = match parts.as_slice() {
        [name] => (*name, None, None),
        [name, qualifier] => (*name, None, Some(*qualifier)),
        [account, "function", ..] if is_account(account) && parts.len() <= 4 => {
            return Err(wrong(
                "a partial ARN; give the function's name or its full ARN",
            ));
        }
        [
            "arn",
            partition,
            service,
            region,
            account,
            resource,
            name,
            rest @ ..,
        ] if rest.len() <= 1 => {
            if !is_partition(partition) {
                return Err(wrong(&format!(
                    "{partition:?} is not an AWS partition (aws, aws-cn, aws-us-gov, ...)"
                )));
            }
            if *service != "lambda" {
                return Err(wrong(&format!("the ARN is of {service:?}, not lambda")));
            }
            if !is_region(region) {
                return Err(wrong(&format!(
                    "{region:?} is not an AWS Region (such as us-east-1)"
                )));
            }
            if !is_account(account) {
                return Err(wrong(&format!(
                    "{account:?} is not an AWS account ID (12 digits)"
                )));
            }
            if *resource != "function" {
                return Err(wrong(&format!(
                    "the ARN is of a {resource:?}, not a function"
                )));
            }
            let arn = FunctionArn {
                partition,
                region,
                account,
            };
            (*name, Some(arn), rest.first().copied())
        }
        ["arn", ..] => return Err(wrong("an ARN with the wrong number of parts")),
        _ => return Err(wrong("too many ':'")),
    };
    if name.is_empty() {
        return Err(wrong("the function name is empty"));
    }
    if name.len() > MAX_FUNCTION_NAME_LEN {
        return Err(wrong(&format!(
            "the function name is {} characters long, over Lambda's {MAX_FUNCTION_NAME_LEN}",
            name.len()
        )));
    }
    if !is_name(name) {
        return Err(wrong(
            "a function name has only letters, digits, hyphens and underscores",
        ));
    }
    if let Some(found) = found_qualifier {
        if qualifier == Qualifier::Refused {
            return Err(format!(
                "{reference:?} names the alias or version {found:?}; give the function without it ({}) and its alias in Alias",
                &reference[..reference.len() - found.len() - 1]
            ));
        }
        let valid = found == "$LATEST"
            || (!found.is_empty() && found.len() <= MAX_ALIAS_LEN && is_name(found));
        if !valid {
            return Err(wrong(&format!(
                "{found:?} is not an alias, a version or $LATEST"
            )));
        }
    }
    let limit = match found_qualifier {
        None => MAX_FUNCTION_REF_LEN,
        Some(_) => MAX_QUALIFIED_FUNCTION_REF_LEN,
    };
    if reference.len() > limit {
        return Err(wrong(&format!(
            "it is {} characters long, over Lambda's {limit}",
            reference.len()
        )));
    }
    Ok(FunctionRef {
        name,
        arn,
        qualifier: found_qualifier,
    })
}

/// Checks an alias name by Lambda's rule (CreateAlias `Name`: 1 to 128 characters,
/// pattern `(?!^[0-9]+$)([a-zA-Z0-9-_]+)`).
pub fn check_alias(alias: &str) -> Result<(), String> {
    if alias.is_empty() || alias.len() > MAX_ALIAS_LEN || !is_name(alias) {
        return Err(format!(
            "{alias:?} is not an alias name: 1 to {MAX_ALIAS_LEN} letters, digits, hyphens or underscores"
        ));
    }
    if alias.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{alias:?} is not an alias name: it must not be only digits, which Lambda reads as a version"
        ));
    }
    Ok(())
}

/// Reads a published version number (`1`, `"2"`); `$LATEST`, zero, leading zeros and
/// anything else are refused with the reason.
pub fn check_version(text: &str) -> Result<u64, String> {
    if text == "$LATEST" {
        return Err(
            "$LATEST is not a published version; an alias's traffic can shift only between published versions (1, 2, ...)"
                .to_owned(),
        );
    }
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits || text.starts_with('0') {
        return Err(format!(
            "must be a published version number, a whole number from 1 such as 1 or \"2\", found {text:?}"
        ));
    }
    text.parse::<u64>()
        .map_err(|_| format!("{text} is too large to be a Lambda version"))
}

/// Letters, digits, hyphens and underscores: Lambda's `[a-zA-Z0-9-_]+`.
pub(super) fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `aws[a-zA-Z-]*`
fn is_partition(text: &str) -> bool {
    text.strip_prefix("aws")
        .is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-'))
}

/// `(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}`
pub(super) fn is_region(text: &str) -> bool {
    let text = text.strip_prefix("eusc-").unwrap_or(text);
    let lower = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase());
    let parts: Vec<&str> = text.split('-').collect();
    let (country, place, number) = match parts.as_slice() {
        [country, place, number] => (*country, *place, *number),
        [country, partition, place, number]
            if *partition == "gov"
                || partition.strip_prefix("iso").is_some_and(|letter| {
                    letter.len() <= 1 && (letter.is_empty() || lower(letter))
                }) =>
        {
            (*country, *place, *number)
        }
        _ => return false,
    };
    country.len() == 2
        && lower(country)
        && lower(place)
        && number.len() == 1
        && number.bytes().all(|b| b.is_ascii_digit())
}

/// `\d{12}`
fn is_account(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}
