//! The appspec of an AWS Lambda deployment (YAML or JSON): parsing and validation.
//!
//! A Lambda appspec names one function, the alias whose traffic CodeDeploy shifts, the
//! published version the alias points to now and the one it is to point to, and at most
//! two validation functions to run around the shift (CodeDeploy user guide: "AppSpec
//! 'resources' section (Amazon ECS and AWS Lambda deployments only)", "AppSpec 'hooks'
//! section for an AWS Lambda deployment" and "AppSpec File example for an AWS Lambda
//! deployment"):
//!
//! ```yaml
//! version: 0.0
//! Resources:
//!   - myLambdaFunction:
//!       Type: AWS::Lambda::Function
//!       Properties:
//!         Name: "myLambdaFunction"
//!         Alias: "myLambdaFunctionAlias"
//!         CurrentVersion: "1"
//!         TargetVersion: "2"
//! Hooks:
//!   - BeforeAllowTraffic: "LambdaFunctionToValidateBeforeTrafficShift"
//!   - AfterAllowTraffic: "LambdaFunctionToValidateAfterTrafficShift"
//! ```
//!
//! As in the EC2/on-premises parser, every problem is reported, each with the path of its
//! field (`Resources[0].myLambdaFunction.Properties.TargetVersion`) and what is allowed.
//! Decisions:
//!
//! - Keys are matched without regard to ASCII case: the user guide writes them
//!   `Resources`, `Type`, `Properties`, `CurrentVersion` in its example and `resources`,
//!   `type`, `properties`, `currentversion` in its reference of the section, so both
//!   spellings (and any other) are read, hook names included. Field paths use the file's
//!   own spelling. The value of `Type` is matched exactly, as CloudFormation type names
//!   are.
//! - Unknown keys are errors at every level, the top level included (the EC2/on-premises
//!   parser only warns there), and `os`, `files`, `permissions` and
//!   `file_exists_behavior` are refused as belonging to EC2/On-Premises appspecs.
//! - `Resources` lists exactly one function: a Lambda deployment shifts one alias of
//!   one function.
//! - `Name` is a function's name or its full ARN, without a qualifier (`Alias` says which
//!   alias moves); a partial ARN (`123456789012:function:name`) is refused for clarity.
//!   A hook may name its function with a qualifier (`name:alias`, `name:3`, a qualified
//!   ARN), since Lambda's Invoke takes one and runs that alias or version.
//! - `CurrentVersion` and `TargetVersion` are published version numbers (1, 2, ...),
//!   written as YAML numbers or strings; `$LATEST` is refused, since an alias's routing
//!   can name only published versions; the two must differ.

use super::validation::describe;
use super::{Problem, Problems};
use serde::{Deserialize, Serialize};
use serde_norway::Value;
use std::fmt;

mod names;
pub use names::{FunctionArn, FunctionRef, Qualifier, check_alias, check_function, check_version};
#[cfg(test)]
use names::{is_name, is_region};

/// The only resource type of a Lambda appspec.
pub const FUNCTION_TYPE: &str = "AWS::Lambda::Function";

/// The longest function name Lambda allows (the name alone, not an ARN).
pub const MAX_FUNCTION_NAME_LEN: usize = 64;

/// The longest alias name Lambda allows; a qualifier of a hook function has the same limit.
pub const MAX_ALIAS_LEN: usize = 128;

/// The longest unqualified function reference (name or ARN) Lambda takes, as
/// `FunctionName` of UpdateAlias and GetAlias.
pub const MAX_FUNCTION_REF_LEN: usize = 140;

/// The longest qualified function reference Lambda takes, as `FunctionName` of Invoke.
pub const MAX_QUALIFIED_FUNCTION_REF_LEN: usize = 170;

const TOP_LEVEL_KEYS: [&str; 3] = ["version", "Resources", "Hooks"];
const EC2_ONLY_KEYS: [&str; 4] = ["os", "files", "permissions", "file_exists_behavior"];
const RESOURCE_KEYS: [&str; 2] = ["Type", "Properties"];
const PROPERTY_KEYS: [&str; 4] = ["Name", "Alias", "CurrentVersion", "TargetVersion"];

/// A validated Lambda appspec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LambdaAppSpec {
    /// The one function the deployment shifts traffic for.
    pub function: LambdaFunction,
    /// The function run before traffic shifts (`BeforeAllowTraffic`), as the appspec
    /// names it: a name or ARN, perhaps qualified.
    pub before_allow_traffic: Option<String>,
    /// The function run after traffic has shifted (`AfterAllowTraffic`), likewise.
    pub after_allow_traffic: Option<String>,
}

/// The `AWS::Lambda::Function` resource of a Lambda appspec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LambdaFunction {
    /// The resource's key in `Resources` (`myLambdaFunction`): a label of the appspec's
    /// own, not necessarily the function's name.
    pub logical_name: String,
    /// The function's name or full ARN, as written, without a qualifier.
    pub name: String,
    /// The alias whose traffic shifts.
    pub alias: String,
    /// The published version the alias points to before the deployment.
    pub current_version: u64,
    /// The published version the alias points to after it.
    pub target_version: u64,
}

impl LambdaFunction {
    /// The function's name, taken out of its ARN when `name` is one.
    pub fn function_name(&self) -> &str {
        self.name.rsplit(':').next().unwrap_or(&self.name)
    }
}

/// The lifecycle events of a Lambda deployment that run a validation function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LambdaHook {
    /// Before the alias's traffic starts to shift to the target version.
    BeforeAllowTraffic,
    /// After all of the alias's traffic has shifted to the target version.
    AfterAllowTraffic,
}

impl LambdaHook {
    /// In the order they run.
    pub const ALL: [LambdaHook; 2] = [Self::BeforeAllowTraffic, Self::AfterAllowTraffic];
    pub const NAMES: [&str; 2] = ["BeforeAllowTraffic", "AfterAllowTraffic"];

    /// Reads a hook's name, without regard to ASCII case like every key of the appspec.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|hook| hook.name().eq_ignore_ascii_case(name))
    }

    /// CodeDeploy's name for the hook.
    pub const fn name(self) -> &'static str {
        match self {
            Self::BeforeAllowTraffic => "BeforeAllowTraffic",
            Self::AfterAllowTraffic => "AfterAllowTraffic",
        }
    }
}

impl fmt::Display for LambdaHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl LambdaAppSpec {
    /// Parses and validates a Lambda appspec, YAML or JSON, returning every problem when
    /// it is invalid.
    pub fn parse(text: &str) -> Result<LambdaAppSpec, Problems> {
        let document = super::load(text)?;
        let mut checker = Checker::default();
        match checker.document(&document) {
            Some(spec) if checker.errors.is_empty() => Ok(spec),
            _ => Err(Problems(checker.errors)),
        }
    }

    /// The function a hook runs, as the appspec names it; `None` when it runs none.
    pub fn hook(&self, hook: LambdaHook) -> Option<&str> {
        match hook {
            LambdaHook::BeforeAllowTraffic => self.before_allow_traffic.as_deref(),
            LambdaHook::AfterAllowTraffic => self.after_allow_traffic.as_deref(),
        }
    }

    /// The hooks the appspec gives a function, in the order they run.
    pub fn hooks(&self) -> impl Iterator<Item = (LambdaHook, &str)> {
        LambdaHook::ALL
            .into_iter()
            .filter_map(|hook| self.hook(hook).map(|function| (hook, function)))
    }
}

/// Parses and validates a Lambda appspec; the same as [`LambdaAppSpec::parse`].
pub fn parse(text: &str) -> Result<LambdaAppSpec, Problems> {
    LambdaAppSpec::parse(text)
}

/// A mapping's entries matched to its known keys without regard to ASCII case.
struct Fields<'v> {
    /// The known key, as the file spells it, and its value.
    found: Vec<(&'static str, String, &'v Value)>,
}

impl<'v> Fields<'v> {
    /// The entry for a known key: its spelling in the file and its value.
    fn get(&self, known: &str) -> Option<(&str, &'v Value)> {
        self.found
            .iter()
            .find(|(key, _, _)| *key == known)
            .map(|(_, spelled, value)| (spelled.as_str(), *value))
    }
}

/// Walks the YAML tree, collecting every error with its field path.
#[derive(Default)]
struct Checker {
    errors: Vec<Problem>,
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl Checker {
    fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Problem::new(field, message));
    }

    fn document(&mut self, document: &Value) -> Option<LambdaAppSpec> {
        let entries = self.mapping(document, "appspec")?;
        let (fields, unknown) = self.fields(&entries, &TOP_LEVEL_KEYS, "");
        for key in unknown {
            let message = if EC2_ONLY_KEYS
                .iter()
                .any(|ec2| ec2.eq_ignore_ascii_case(&key))
            {
                format!(
                    "belongs to EC2/On-Premises appspecs; a Lambda appspec has only {}",
                    TOP_LEVEL_KEYS.join(", ")
                )
            } else {
                format!(
                    "is not a key of a Lambda appspec (allowed: {})",
                    TOP_LEVEL_KEYS.join(", ")
                )
            };
            self.error(key, message);
        }

        match fields.get("version") {
            None => self.error("version", "is required and must be 0.0"),
            Some((_, Value::Number(n))) if n.as_f64() == Some(0.0) => {}
            Some((_, Value::String(s))) if s == "0.0" => {}
            Some((key, other)) => {
                self.error(key, format!("must be 0.0, found {}", describe(other)))
            }
        }

        let function = self.resources(fields.get("Resources"));
        let (before_allow_traffic, after_allow_traffic) = self.hooks(fields.get("Hooks"));
        Some(LambdaAppSpec {
            function: function?,
            before_allow_traffic,
            after_allow_traffic,
        })
    }

    /// A mapping with string keys, in file order. Reports a non-mapping or a non-string key.
    fn mapping<'v>(&mut self, value: &'v Value, field: &str) -> Option<Vec<(String, &'v Value)>> {
        let Value::Mapping(map) = value else {
            self.error(
                field,
                format!(
                    "must be a mapping of keys to values, found {}",
                    describe(value)
                ),
            );
            return None;
        };
        let mut entries = Vec::with_capacity(map.len());
        for (key, value) in map {
            match key {
                Value::String(key) => entries.push((key.clone(), value)),
                other => self.error(
                    field,
                    format!("keys must be names, found {}", describe(other)),
                ),
            }
        }
        Some(entries)
    }

    /// Matches entries to known keys without regard to case, reporting a key given twice;
    /// returns the unknown keys, for the caller to report.
    fn fields<'v>(
        &mut self,
        entries: &[(String, &'v Value)],
        known: &[&'static str],
        field: &str,
    ) -> (Fields<'v>, Vec<String>) {
        let mut fields = Fields { found: Vec::new() };
        let mut unknown = Vec::new();
        for (key, value) in entries {
            match known.iter().find(|name| name.eq_ignore_ascii_case(key)) {
                None => unknown.push(key.clone()),
                Some(name) => {
                    if let Some((first, _)) = fields.get(name) {
                        let message =
                            format!("repeats {first} (keys are read without regard to case)");
                        self.error(join(field, key), message);
                    } else {
                        fields.found.push((name, key.clone(), value));
                    }
                }
            }
        }
        (fields, unknown)
    }

    fn unknown_keys(&mut self, unknown: Vec<String>, known: &[&str], field: &str) {
        for key in unknown {
            self.error(
                join(field, &key),
                format!("is not a known key (allowed: {})", known.join(", ")),
            );
        }
    }

    /// A scalar as text. Numbers and booleans are accepted as their YAML text.
    fn text(&mut self, value: Option<&Value>, field: &str) -> Option<String> {
        match value {
            None | Some(Value::Null) => {
                self.error(field, "is required");
                None
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                self.error(field, "must not be empty");
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::Bool(b)) => Some(b.to_string()),
            Some(other) => {
                self.error(field, format!("must be text, found {}", describe(other)));
                None
            }
        }
    }

    fn resources(&mut self, section: Option<(&str, &Value)>) -> Option<LambdaFunction> {
        let allowed = format!("a list of one {FUNCTION_TYPE} resource");
        let (field, items) = match section {
            None | Some((_, Value::Null)) => {
                let field = section.map_or("Resources", |(key, _)| key);
                self.error(field, format!("is required: {allowed}"));
                return None;
            }
            Some((field, Value::Sequence(items))) => (field, items),
            Some((field, other)) => {
                self.error(
                    field,
                    format!("must be {allowed}, found {}", describe(other)),
                );
                return None;
            }
        };
        match items.len() {
            0 => self.error(field, format!("must be {allowed}, found an empty list")),
            1 => {}
            count => self.error(
                field,
                format!(
                    "lists {count} resources; a Lambda deployment deploys exactly one function, so list one {FUNCTION_TYPE} resource and deploy other functions in deployments of their own"
                ),
            ),
        }
        let mut functions: Vec<Option<LambdaFunction>> = items
            .iter()
            .enumerate()
            .map(|(index, item)| self.resource(item, &format!("{field}[{index}]")))
            .collect();
        if functions.len() == 1 {
            functions.pop().flatten()
        } else {
            None
        }
    }

    fn resource(&mut self, item: &Value, field: &str) -> Option<LambdaFunction> {
        let entries = self.mapping(item, field)?;
        let (logical_name, value) = match entries.as_slice() {
            [(name, value)] if !RESOURCE_KEYS.iter().any(|k| k.eq_ignore_ascii_case(name)) => {
                (name.clone(), *value)
            }
            _ if entries
                .iter()
                .any(|(key, _)| RESOURCE_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key))) =>
            {
                self.error(
                    field,
                    "names no resource: give it a name of your choice, as `- myFunction:`, and put its Type and Properties under that name",
                );
                return None;
            }
            _ => {
                self.error(
                    field,
                    format!(
                        "must map one name to its resource, as `- myFunction:` with its Type and Properties under it, found {} keys",
                        entries.len()
                    ),
                );
                return None;
            }
        };
        let field = format!("{field}.{logical_name}");
        let entries = self.mapping(value, &field)?;
        let (fields, unknown) = self.fields(&entries, &RESOURCE_KEYS, &field);
        self.unknown_keys(unknown, &RESOURCE_KEYS, &field);

        match fields.get("Type") {
            None | Some((_, Value::Null)) => self.error(
                join(&field, fields.get("Type").map_or("Type", |(key, _)| key)),
                format!("is required and must be {FUNCTION_TYPE}"),
            ),
            Some((_, Value::String(kind))) if kind == FUNCTION_TYPE => {}
            Some((key, other)) => {
                let hint = match other {
                    Value::String(kind) if kind == "AWS::ECS::Service" => {
                        "; Gantry deploys to EC2/On-Premises and AWS Lambda, not Amazon ECS"
                    }
                    Value::String(kind) if kind.eq_ignore_ascii_case(FUNCTION_TYPE) => {
                        " (type names are case-sensitive)"
                    }
                    _ => "",
                };
                self.error(
                    join(&field, key),
                    format!("must be {FUNCTION_TYPE}, found {}{hint}", describe(other)),
                );
            }
        }

        let (properties_field, properties) = match fields.get("Properties") {
            None | Some((_, Value::Null)) => {
                self.error(
                    join(
                        &field,
                        fields
                            .get("Properties")
                            .map_or("Properties", |(key, _)| key),
                    ),
                    format!("is required: {}", PROPERTY_KEYS.join(", ")),
                );
                return None;
            }
            Some((key, value)) => (join(&field, key), value),
        };
        let entries = self.mapping(properties, &properties_field)?;
        let (properties, unknown) = self.fields(&entries, &PROPERTY_KEYS, &properties_field);
        self.unknown_keys(unknown, &PROPERTY_KEYS, &properties_field);
        let path = |name: &str| {
            join(
                &properties_field,
                properties.get(name).map_or(name, |(key, _)| key),
            )
        };
        let value = |name: &str| properties.get(name).map(|(_, value)| value);

        let name_field = path("Name");
        let name = self.text(value("Name"), &name_field).filter(|name| {
            match check_function(name, Qualifier::Refused) {
                Ok(_) => true,
                Err(why) => {
                    self.error(name_field.as_str(), why);
                    false
                }
            }
        });
        let alias_field = path("Alias");
        let alias =
            self.text(value("Alias"), &alias_field)
                .filter(|alias| match check_alias(alias) {
                    Ok(()) => true,
                    Err(why) => {
                        self.error(alias_field.as_str(), why);
                        false
                    }
                });
        let current_version = self.version(value("CurrentVersion"), &path("CurrentVersion"));
        let target_field = path("TargetVersion");
        let target_version = self.version(value("TargetVersion"), &target_field);
        if let (Some(current), Some(target)) = (current_version, target_version)
            && current == target
        {
            self.error(
                target_field,
                format!(
                    "is the same as CurrentVersion ({current}); a deployment shifts the alias to another version"
                ),
            );
        }
        Some(LambdaFunction {
            logical_name,
            name: name?,
            alias: alias?,
            current_version: current_version?,
            target_version: target_version?,
        })
    }

    /// A published version number, written as a YAML number or a string.
    fn version(&mut self, value: Option<&Value>, field: &str) -> Option<u64> {
        let text = match value {
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) => s.clone(),
            None | Some(Value::Null) => {
                self.error(field, "is required: a published version number such as 1");
                return None;
            }
            Some(other) => {
                self.error(
                    field,
                    format!(
                        "must be a published version number, a whole number from 1 such as 1 or \"2\", found {}",
                        describe(other)
                    ),
                );
                return None;
            }
        };
        match check_version(&text) {
            Ok(version) => Some(version),
            Err(why) => {
                self.error(field, why);
                None
            }
        }
    }

    fn hooks(&mut self, section: Option<(&str, &Value)>) -> (Option<String>, Option<String>) {
        let mut before: Option<(String, Option<String>)> = None;
        let mut after: Option<(String, Option<String>)> = None;
        let (field, items) = match section {
            None | Some((_, Value::Null)) => return (None, None),
            Some((field, Value::Sequence(items))) => (field, items),
            Some((field, other)) => {
                self.error(
                    field,
                    format!(
                        "must be a list of hooks, each `- BeforeAllowTraffic: FunctionName` or `- AfterAllowTraffic: FunctionName`, found {}",
                        describe(other)
                    ),
                );
                return (None, None);
            }
        };
        for (index, item) in items.iter().enumerate() {
            let item_field = format!("{field}[{index}]");
            let Some(entries) = self.mapping(item, &item_field) else {
                continue;
            };
            let [(name, function)] = entries.as_slice() else {
                self.error(
                    &item_field,
                    format!(
                        "must map one hook to its function, as `- BeforeAllowTraffic: FunctionName`, found {} keys",
                        entries.len()
                    ),
                );
                continue;
            };
            let hook_field = format!("{item_field}.{name}");
            let Some(hook) = LambdaHook::parse(name) else {
                self.error(
                    hook_field,
                    format!(
                        "is not a lifecycle event of the AWS Lambda platform (allowed: {})",
                        LambdaHook::NAMES.join(", ")
                    ),
                );
                continue;
            };
            let slot = match hook {
                LambdaHook::BeforeAllowTraffic => &mut before,
                LambdaHook::AfterAllowTraffic => &mut after,
            };
            if let Some((first, _)) = slot {
                let message =
                    format!("is listed twice (first at {first}); each hook runs one function");
                self.error(hook_field, message);
                continue;
            }
            let function = match function {
                Value::Null => {
                    self.error(
                        &hook_field,
                        "must name the Lambda function to run, found nothing",
                    );
                    None
                }
                other => self.text(Some(other), &hook_field),
            };
            let function =
                function.filter(
                    |function| match check_function(function, Qualifier::Allowed) {
                        Ok(_) => true,
                        Err(why) => {
                            self.error(hook_field.as_str(), why);
                            false
                        }
                    },
                );
            *slot = Some((item_field, function));
        }
        (
            before.and_then(|(_, function)| function),
            after.and_then(|(_, function)| function),
        )
    }
}

#[cfg(test)]
mod tests;
