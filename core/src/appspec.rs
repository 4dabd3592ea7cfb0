//! `appspec.yml` for the EC2/on-premises platform: parsing and validation; [`lambda`]
//! reads the appspec of an AWS Lambda deployment, and [`detect`] tells the two apart.
//!
//! Validation follows CodeDeploy's AppSpec reference and reports every problem it finds,
//! each with the path of the field (`hooks.AfterInstall[0].timeout`) and what is allowed.
//! Keys CodeDeploy ignores (an unknown top-level key) are warnings, not errors, so that
//! appspec files that deploy on CodeDeploy deploy here too.

use crate::lifecycle::LifecycleEvent;
use serde::{Deserialize, Serialize};
use serde_norway::Value;
use std::fmt;
use std::path::{Component, Path};

/// The names the agent looks for at the root of a revision, in order of preference.
pub const APPSPEC_FILE_NAMES: [&str; 2] = ["appspec.yml", "appspec.yaml"];

/// A hook's timeout when the appspec gives none, in seconds.
pub const DEFAULT_HOOK_TIMEOUT_SECS: u64 = 3600;

/// CodeDeploy's limit on script execution per lifecycle event, in seconds: no script's
/// `timeout` may exceed it, and an event's scripts share it (AppSpec "hooks" section:
/// "3600 seconds (1 hour) is the maximum amount of time allowed for script execution for
/// each deployment lifecycle event").
pub const MAX_EVENT_SCRIPT_SECS: u64 = 3600;

/// One thing wrong (or suspicious) in an appspec, with the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Path of the field, for example `hooks.AfterInstall[0].timeout`; `appspec` for the
    /// document as a whole.
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found in an appspec; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    Linux,
    Windows,
}

/// What Install does when a destination file already exists and was not installed by
/// the previous deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FileExistsBehavior {
    /// Fail the deployment (CodeDeploy's default).
    Disallow,
    /// Replace the file with the revision's.
    Overwrite,
    /// Keep the file on the host.
    Retain,
}

impl FileExistsBehavior {
    pub const NAMES: [&str; 3] = ["DISALLOW", "OVERWRITE", "RETAIN"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "DISALLOW" => Some(Self::Disallow),
            "OVERWRITE" => Some(Self::Overwrite),
            "RETAIN" => Some(Self::Retain),
            _ => None,
        }
    }

    /// The name `parse` reads back.
    pub fn name(self) -> &'static str {
        match self {
            Self::Disallow => "DISALLOW",
            Self::Overwrite => "OVERWRITE",
            Self::Retain => "RETAIN",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMapping {
    /// Path inside the revision; `/` means the whole revision.
    pub source: String,
    /// Absolute path on the host.
    pub destination: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectType {
    File,
    Directory,
}

/// An SELinux context to apply with `chcon`-like semantics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelinuxContext {
    pub name: Option<String>,
    pub user: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub range: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    pub object: String,
    /// Glob matched below `object` when it is a directory; `**` when not given.
    pub pattern: String,
    pub except: Vec<String>,
    pub owner: Option<String>,
    pub group: Option<String>,
    /// Permission bits, parsed from the appspec's octal digits.
    pub mode: Option<u32>,
    pub acls: Vec<String>,
    pub context: Option<SelinuxContext>,
    /// Which kinds of object the entry applies to; empty means both.
    pub types: Vec<ObjectType>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookScript {
    /// Path of the script inside the revision.
    pub location: String,
    pub timeout_secs: u64,
    pub runas: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSpec {
    pub os: Os,
    pub files: Vec<FileMapping>,
    pub permissions: Vec<Permission>,
    /// Scripts per event, in the order the file lists the events.
    pub hooks: Vec<(LifecycleEvent, Vec<HookScript>)>,
    pub file_exists_behavior: Option<FileExistsBehavior>,
    /// Things CodeDeploy accepts but that are probably mistakes (unknown keys).
    pub warnings: Vec<Problem>,
}

impl AppSpec {
    /// Parses and validates an appspec, returning every problem when it is invalid.
    pub fn parse(text: &str) -> Result<AppSpec, Problems> {
        Self::parse_with(text, Checker::default())
    }

    /// As a host reads the appspec of a revision it was sent: a hook timeout over
    /// CodeDeploy's hour, which linting and registration refuse, is taken as the hour,
    /// with a warning. A revision registered before the limit must still deploy (a
    /// rollback to it above all), and CodeDeploy stops its scripts at the hour too.
    pub fn parse_on_host(text: &str) -> Result<AppSpec, Problems> {
        Self::parse_with(
            text,
            Checker {
                clamp_timeouts: true,
                ..Checker::default()
            },
        )
    }

    fn parse_with(text: &str, mut checker: Checker) -> Result<AppSpec, Problems> {
        let document = load(text)?;
        let spec = checker.document(&document);
        match spec {
            Some(spec) if checker.errors.is_empty() => Ok(AppSpec {
                warnings: checker.warnings,
                ..spec
            }),
            _ => Err(Problems(checker.errors)),
        }
    }

    /// The scripts for one event; empty when the appspec has none.
    pub fn scripts(&self, event: LifecycleEvent) -> &[HookScript] {
        self.hooks
            .iter()
            .find(|(hooked, _)| *hooked == event)
            .map(|(_, scripts)| scripts.as_slice())
            .unwrap_or(&[])
    }

    /// How long one event's scripts may run together, in seconds: the sum of their
    /// timeouts, at most CodeDeploy's [`MAX_EVENT_SCRIPT_SECS`].
    pub fn event_limit_secs(&self, event: LifecycleEvent) -> u64 {
        self.scripts(event)
            .iter()
            .fold(0u64, |total, script| {
                total.saturating_add(script.timeout_secs)
            })
            .min(MAX_EVENT_SCRIPT_SECS)
    }

    /// Paths inside the revision that the appspec refers to and that must exist:
    /// `files` sources and hook scripts, each with the field that names it.
    pub fn referenced_paths(&self) -> Vec<(String, &str)> {
        let sources = self
            .files
            .iter()
            .enumerate()
            .map(|(index, file)| (format!("files[{index}].source"), file.source.as_str()));
        let scripts = self.hooks.iter().flat_map(|(event, scripts)| {
            scripts.iter().enumerate().map(move |(index, script)| {
                (
                    format!("hooks.{event}[{index}].location"),
                    script.location.as_str(),
                )
            })
        });
        sources.chain(scripts).collect()
    }
}

/// Resolves a path named in the appspec to a path relative to the revision root.
/// CodeDeploy joins such paths onto the archive directory, so a leading `/` means the
/// revision root, not the host's. Returns `None` when the path climbs out of the
/// revision with `..`.
pub fn revision_relative(path: &str) -> Option<&Path> {
    let relative = Path::new(path.trim_start_matches(['/', '\\']));
    let mut depth = 0usize;
    for component in relative.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => depth = depth.checked_sub(1)?,
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(relative)
}

/// Which compute platform an appspec is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AppSpecKind {
    /// `os`, `files`, `permissions` and hook scripts: read with [`AppSpec::parse`].
    Ec2OnPremises,
    /// One `AWS::Lambda::Function` in `Resources`: read with [`lambda::LambdaAppSpec::parse`].
    Lambda,
}

impl AppSpecKind {
    /// CodeDeploy's name for the platform.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Ec2OnPremises => "EC2/On-Premises",
            Self::Lambda => "AWS Lambda",
        }
    }
}

impl fmt::Display for AppSpecKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Tells which platform an appspec is for, so that one command can lint either kind; the
/// parser of that kind then says what, if anything, is wrong with it.
///
/// It is a Lambda appspec when its top-level `Resources` (any case) lists an
/// `AWS::Lambda::Function`, or when it has no `os` (which every EC2/on-premises appspec
/// needs) but has a `Resources` section or a `Hooks` list (EC2/on-premises hooks are a
/// mapping): so a misspelt `Type`, an ECS service or a forgotten `Resources` is
/// reported by the Lambda parser rather than as a missing `os`. Anything else, including
/// text that is not YAML or not a mapping (which both parsers report alike), is taken for
/// EC2/on-premises.
pub fn detect(text: &str) -> AppSpecKind {
    let Ok(Value::Mapping(top)) = serde_norway::from_str::<Value>(text) else {
        return AppSpecKind::Ec2OnPremises;
    };
    let key = |name: &str| {
        top.iter()
            .find(|(key, _)| {
                key.as_str()
                    .is_some_and(|key| key.eq_ignore_ascii_case(name))
            })
            .map(|(_, value)| value)
    };
    let resources = key("Resources");
    let names_a_function = |resource: &Value| {
        resource.as_mapping().is_some_and(|resource| {
            resource.iter().any(|(key, value)| {
                key.as_str()
                    .is_some_and(|key| key.eq_ignore_ascii_case("Type"))
                    && value.as_str() == Some(lambda::FUNCTION_TYPE)
            })
        })
    };
    // `- name: {Type: ...}` as CodeDeploy writes it, or `name: {Type: ...}` as
    // CloudFormation does.
    let lists_a_function = match resources {
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(Value::as_mapping)
            .flat_map(|item| item.values())
            .any(names_a_function),
        Some(Value::Mapping(items)) => items.values().any(names_a_function),
        _ => false,
    };
    let lambda_shaped =
        resources.is_some() || key("Hooks").is_some_and(|hooks| hooks.is_sequence());
    if lists_a_function || (key("os").is_none() && lambda_shaped) {
        AppSpecKind::Lambda
    } else {
        AppSpecKind::Ec2OnPremises
    }
}

/// Reads an appspec's YAML (JSON is YAML too) into a tree; a syntax error is one problem
/// naming its line and column.
fn load(text: &str) -> Result<Value, Problems> {
    serde_norway::from_str(text).map_err(|error| {
        let field = match error.location() {
            Some(at) => format!("appspec (line {}, column {})", at.line(), at.column()),
            None => "appspec".to_owned(),
        };
        Problems(vec![Problem::new(
            field,
            format!("is not valid YAML: {error}"),
        )])
    })
}

pub mod lambda;
mod validation;
use validation::Checker;
pub use validation::check_acl;

#[cfg(test)]
mod tests;
