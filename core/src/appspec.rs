//! `appspec.yml` for the EC2/on-premises platform: parsing and validation.
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
        let document: Value = serde_norway::from_str(text).map_err(|error| {
            let field = match error.location() {
                Some(at) => format!("appspec (line {}, column {})", at.line(), at.column()),
                None => "appspec".to_owned(),
            };
            Problems(vec![Problem::new(
                field,
                format!("is not valid YAML: {error}"),
            )])
        })?;
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

const TOP_LEVEL_KEYS: [&str; 6] = [
    "version",
    "os",
    "files",
    "permissions",
    "hooks",
    "file_exists_behavior",
];

/// Walks the YAML tree, collecting every error and warning with its field path.
#[derive(Default)]
struct Checker {
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
    /// Timeouts over [`MAX_EVENT_SCRIPT_SECS`] become it, with a warning (on a host).
    clamp_timeouts: bool,
}

impl Checker {
    fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Problem::new(field, message));
    }

    fn document(&mut self, document: &Value) -> Option<AppSpec> {
        let top = self.mapping(document, "appspec")?;
        for (key, _) in &top {
            if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
                self.warnings.push(Problem::new(
                    key.clone(),
                    format!(
                        "unknown key, ignored (known keys: {})",
                        TOP_LEVEL_KEYS.join(", ")
                    ),
                ));
            }
        }
        let field = |name: &str| top.iter().find(|(key, _)| key == name).map(|(_, v)| *v);

        match field("version") {
            None => self.error("version", "is required and must be 0.0"),
            Some(Value::Number(n)) if n.as_f64() == Some(0.0) => {}
            Some(Value::String(s)) if s == "0.0" => {}
            Some(other) => self.error("version", format!("must be 0.0, found {}", describe(other))),
        }

        let os = match field("os") {
            None => {
                self.error("os", "is required: linux or windows");
                None
            }
            Some(Value::String(s)) if s == "linux" => Some(Os::Linux),
            Some(Value::String(s)) if s == "windows" => Some(Os::Windows),
            Some(other) => {
                self.error(
                    "os",
                    format!("must be linux or windows, found {}", describe(other)),
                );
                None
            }
        };

        let files = self.files(field("files"), os);
        let permissions = self.permissions(field("permissions"), os);
        let hooks = self.hooks(field("hooks"), os);
        let file_exists_behavior = match field("file_exists_behavior") {
            None | Some(Value::Null) => None,
            Some(value) => {
                let parsed = value.as_str().and_then(FileExistsBehavior::parse);
                if parsed.is_none() {
                    self.error(
                        "file_exists_behavior",
                        format!(
                            "must be one of {}, found {}",
                            FileExistsBehavior::NAMES.join(", "),
                            describe(value)
                        ),
                    );
                }
                parsed
            }
        };

        Some(AppSpec {
            os: os?,
            files,
            permissions,
            hooks,
            file_exists_behavior,
            warnings: Vec::new(),
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

    /// A list, where `null` (an empty section) is an empty list.
    fn sequence<'v>(&mut self, value: Option<&'v Value>, field: &str) -> &'v [Value] {
        match value {
            None | Some(Value::Null) => &[],
            Some(Value::Sequence(items)) => items,
            Some(other) => {
                self.error(field, format!("must be a list, found {}", describe(other)));
                &[]
            }
        }
    }

    /// A scalar as text. Numbers and booleans are accepted as their YAML text, since
    /// CodeDeploy's agent does the same (`owner: 1000`).
    fn text(&mut self, value: Option<&Value>, field: &str, required: bool) -> Option<String> {
        match value {
            None | Some(Value::Null) => {
                if required {
                    self.error(field, "is required");
                }
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

    fn unknown_keys(&mut self, entries: &[(String, &Value)], known: &[&str], field: &str) {
        for (key, _) in entries {
            if !known.contains(&key.as_str()) {
                self.error(
                    format!("{field}.{key}"),
                    format!("is not a known key (allowed: {})", known.join(", ")),
                );
            }
        }
    }

    fn files(&mut self, section: Option<&Value>, os: Option<Os>) -> Vec<FileMapping> {
        let mut files = Vec::new();
        for (index, item) in self.sequence(section, "files").iter().enumerate() {
            let field = format!("files[{index}]");
            let Some(entries) = self.mapping(item, &field) else {
                continue;
            };
            self.unknown_keys(&entries, &["source", "destination"], &field);
            let get = |name: &str| entries.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
            let source = self.text(get("source"), &format!("{field}.source"), true);
            if let Some(source) = &source
                && revision_relative(source).is_none()
            {
                self.error(
                    format!("{field}.source"),
                    format!("{source:?} leaves the revision; use a path inside it"),
                );
            }
            let destination = self.text(get("destination"), &format!("{field}.destination"), true);
            if let Some(destination) = &destination
                && !is_absolute_for(destination, os)
            {
                self.error(
                    format!("{field}.destination"),
                    format!("{destination:?} must be an absolute path on the host"),
                );
            }
            if let (Some(source), Some(destination)) = (source, destination) {
                files.push(FileMapping {
                    source,
                    destination,
                });
            }
        }
        files
    }

    fn permissions(&mut self, section: Option<&Value>, os: Option<Os>) -> Vec<Permission> {
        let items = self.sequence(section, "permissions");
        if !items.is_empty() && os == Some(Os::Windows) {
            self.error(
                "permissions",
                "applies only to linux instances; remove it or set os: linux",
            );
            return Vec::new();
        }
        let mut permissions = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let field = format!("permissions[{index}]");
            let Some(entries) = self.mapping(item, &field) else {
                continue;
            };
            self.unknown_keys(
                &entries,
                &[
                    "object", "pattern", "except", "owner", "group", "mode", "acls", "context",
                    "type",
                ],
                &field,
            );
            let get = |name: &str| entries.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
            let errors_before = self.errors.len();

            let object = self.text(get("object"), &format!("{field}.object"), true);
            if let Some(object) = &object
                && !object.starts_with('/')
            {
                self.error(
                    format!("{field}.object"),
                    format!("{object:?} must be an absolute path on the host"),
                );
            }
            let pattern = self
                .text(get("pattern"), &format!("{field}.pattern"), false)
                .unwrap_or_else(|| "**".to_owned());
            let except = self.text_list(get("except"), &format!("{field}.except"));
            let owner = self.text(get("owner"), &format!("{field}.owner"), false);
            let group = self.text(get("group"), &format!("{field}.group"), false);
            let mode = get("mode").and_then(|value| self.mode(value, &format!("{field}.mode")));
            let acls = self.text_list(get("acls"), &format!("{field}.acls"));
            for (acl_index, acl) in acls.iter().enumerate() {
                if let Err(why) = check_acl(acl) {
                    self.error(format!("{field}.acls[{acl_index}]"), why);
                }
            }
            let context = get("context")
                .filter(|value| !value.is_null())
                .and_then(|value| self.context(value, &format!("{field}.context")));
            let types = self.object_types(get("type"), &format!("{field}.type"));

            if self.errors.len() == errors_before
                && let Some(object) = object
            {
                permissions.push(Permission {
                    object,
                    pattern,
                    except,
                    owner,
                    group,
                    mode,
                    acls,
                    context,
                    types,
                });
            }
        }
        permissions
    }

    /// A list of text, where a single scalar is a list of one.
    fn text_list(&mut self, value: Option<&Value>, field: &str) -> Vec<String> {
        match value {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Sequence(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(index, item)| {
                    self.text(Some(item), &format!("{field}[{index}]"), true)
                })
                .collect(),
            Some(single) => self.text(Some(single), field, true).into_iter().collect(),
        }
    }

    /// Octal permission bits, written as up to four octal digits (`644`, `0755`, `4755`).
    fn mode(&mut self, value: &Value, field: &str) -> Option<u32> {
        let digits = match value {
            Value::Number(n) if n.is_u64() => n.to_string(),
            Value::String(s) => s.trim().to_owned(),
            Value::Null => return None,
            other => {
                self.error(
                    field,
                    format!(
                        "must be up to 4 octal digits such as 644 or 0755, found {}",
                        describe(other)
                    ),
                );
                return None;
            }
        };
        let valid = !digits.is_empty()
            && digits.len() <= 4
            && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
        if !valid {
            self.error(
                field,
                format!("must be up to 4 octal digits (0-7) such as 644 or 0755, found {digits:?}"),
            );
            return None;
        }
        u32::from_str_radix(&digits, 8).ok()
    }

    fn context(&mut self, value: &Value, field: &str) -> Option<SelinuxContext> {
        let entries = self.mapping(value, field)?;
        self.unknown_keys(&entries, &["name", "user", "type", "range"], field);
        let get = |name: &str| entries.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
        let name = self.text(get("name"), &format!("{field}.name"), false);
        let user = self.text(get("user"), &format!("{field}.user"), false);
        let kind = self.text(get("type"), &format!("{field}.type"), true);
        let range = self.text(get("range"), &format!("{field}.range"), false);
        Some(SelinuxContext {
            name,
            user,
            kind: kind?,
            range,
        })
    }

    fn object_types(&mut self, value: Option<&Value>, field: &str) -> Vec<ObjectType> {
        let names = self.text_list(value, field);
        let mut types = Vec::new();
        for (index, name) in names.iter().enumerate() {
            match name.as_str() {
                "file" => types.push(ObjectType::File),
                "directory" => types.push(ObjectType::Directory),
                other => self.error(
                    if matches!(value, Some(Value::Sequence(_))) {
                        format!("{field}[{index}]")
                    } else {
                        field.to_owned()
                    },
                    format!("must be file or directory, found {other:?}"),
                ),
            }
        }
        types
    }

    fn hooks(
        &mut self,
        section: Option<&Value>,
        os: Option<Os>,
    ) -> Vec<(LifecycleEvent, Vec<HookScript>)> {
        let Some(section) = section.filter(|value| !value.is_null()) else {
            return Vec::new();
        };
        let Some(entries) = self.mapping(section, "hooks") else {
            return Vec::new();
        };
        let mut hooks = Vec::new();
        for (name, scripts) in entries {
            let field = format!("hooks.{name}");
            let event = match name.parse::<LifecycleEvent>() {
                Ok(event) if event.accepts_hooks() => event,
                Ok(event) => {
                    self.error(
                        field,
                        format!(
                            "{event} is carried out by Gantry itself and cannot run scripts (events that can: {})",
                            LifecycleEvent::hook_names().join(", ")
                        ),
                    );
                    continue;
                }
                Err(_) => {
                    self.error(
                        field,
                        format!(
                            "is not a lifecycle event of the EC2/on-premises platform (allowed: {})",
                            LifecycleEvent::hook_names().join(", ")
                        ),
                    );
                    continue;
                }
            };
            let mut parsed = Vec::new();
            for (index, script) in self.sequence(Some(scripts), &field).iter().enumerate() {
                if let Some(script) = self.hook_script(script, &format!("{field}[{index}]"), os) {
                    parsed.push(script);
                }
            }
            let total: u64 = parsed.iter().map(|script| script.timeout_secs).sum();
            if total > MAX_EVENT_SCRIPT_SECS {
                self.warnings.push(Problem::new(
                    field,
                    format!(
                        "the scripts' timeouts add up to {total} s; an event's scripts share CodeDeploy's {MAX_EVENT_SCRIPT_SECS} s, so the event fails if they run longer than that together"
                    ),
                ));
            }
            hooks.push((event, parsed));
        }
        hooks
    }

    fn hook_script(&mut self, value: &Value, field: &str, os: Option<Os>) -> Option<HookScript> {
        let entries = self.mapping(value, field)?;
        self.unknown_keys(&entries, &["location", "timeout", "runas"], field);
        let get = |name: &str| entries.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
        let location = self.text(get("location"), &format!("{field}.location"), true);
        if let Some(location) = &location
            && revision_relative(location).is_none()
        {
            self.error(
                format!("{field}.location"),
                format!("{location:?} leaves the revision; scripts must be inside it"),
            );
        }
        let timeout_secs = match get("timeout") {
            None | Some(Value::Null) => Some(DEFAULT_HOOK_TIMEOUT_SECS),
            Some(Value::Number(n))
                if n.as_u64()
                    .is_some_and(|secs| (1..=MAX_EVENT_SCRIPT_SECS).contains(&secs)) =>
            {
                n.as_u64()
            }
            Some(Value::Number(n))
                if self.clamp_timeouts && n.as_u64().is_some_and(|secs| secs > 0) =>
            {
                self.warnings.push(Problem::new(
                    format!("{field}.timeout"),
                    format!(
                        "{n} s is over CodeDeploy's {MAX_EVENT_SCRIPT_SECS} s per lifecycle event; the script gets {MAX_EVENT_SCRIPT_SECS} s"
                    ),
                ));
                Some(MAX_EVENT_SCRIPT_SECS)
            }
            Some(other) => {
                self.error(
                    format!("{field}.timeout"),
                    format!(
                        "must be a whole number of seconds from 1 to {MAX_EVENT_SCRIPT_SECS}, CodeDeploy's limit per lifecycle event (default {DEFAULT_HOOK_TIMEOUT_SECS}), found {}",
                        describe(other)
                    ),
                );
                None
            }
        };
        let runas = self.text(get("runas"), &format!("{field}.runas"), false);
        if let Some(user) = &runas {
            if os == Some(Os::Windows) {
                self.error(
                    format!("{field}.runas"),
                    "is supported only on linux instances",
                );
            } else if user
                .chars()
                .any(|c| c.is_whitespace() || c == ':' || c == '/')
            {
                self.error(
                    format!("{field}.runas"),
                    format!("{user:?} is not a user name (no spaces, ':' or '/')"),
                );
            }
        }
        Some(HookScript {
            location: location?,
            timeout_secs: timeout_secs?,
            runas,
        })
    }
}

fn is_absolute_for(path: &str, os: Option<Os>) -> bool {
    let windows_absolute = {
        let bytes = path.as_bytes();
        bytes.len() >= 3
            && bytes[0].is_ascii_alphabetic()
            && bytes[1] == b':'
            && matches!(bytes[2], b'\\' | b'/')
    };
    match os {
        Some(Os::Windows) => windows_absolute,
        _ => path.starts_with('/'),
    }
}

/// Checks one ACL entry in `setfacl -m` syntax: `[d[efault]:]u[ser]:[name]:perms`,
/// `g[roup]:[name]:perms`, `m[ask][:]:perms`, `o[ther][:]:perms`, where perms is a
/// combination of `rwxX-` or one octal digit.
pub fn check_acl(entry: &str) -> Result<(), String> {
    let wrong = || {
        format!(
            "{entry:?} is not a setfacl entry; expected forms like u:alice:rw, g::r, m::rwx, o::r or d:u:alice:rwx"
        )
    };
    let mut parts: Vec<&str> = entry.split(':').collect();
    if matches!(parts.first(), Some(&"d") | Some(&"default")) {
        parts.remove(0);
    }
    let (tag, perms) = match parts.as_slice() {
        [tag, _qualifier, perms] if matches!(*tag, "u" | "user" | "g" | "group") => (*tag, *perms),
        [tag, "", perms] | [tag, perms] if matches!(*tag, "m" | "mask" | "o" | "other") => {
            (*tag, *perms)
        }
        _ => return Err(wrong()),
    };
    let _ = tag;
    let symbolic = !perms.is_empty()
        && perms
            .chars()
            .all(|c| matches!(c, 'r' | 'w' | 'x' | 'X' | '-'));
    let octal = perms.len() == 1 && perms.chars().all(|c| ('0'..='7').contains(&c));
    if symbolic || octal {
        Ok(())
    } else {
        Err(wrong())
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing".to_owned(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("{n}"),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".to_owned(),
        Value::Mapping(_) => "a mapping".to_owned(),
        Value::Tagged(tagged) => format!("a value tagged {}", tagged.tag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
version: 0.0
os: linux
files:
  - source: /
    destination: /var/www/html
  - source: config/app.conf
    destination: /etc/app
permissions:
  - object: /var/www/html
    pattern: "**"
    except: [/var/www/html/secret]
    owner: www-data
    group: www-data
    mode: 0644
    acls:
      - u:alice:rw
      - d:g::r
    context:
      user: unconfined_u
      type: httpd_sys_content_t
      range: s0
    type:
      - file
hooks:
  ApplicationStop:
    - location: scripts/stop.sh
      timeout: 60
  BeforeInstall:
  AfterInstall:
    - location: scripts/configure.sh
      runas: deploy
    - location: /scripts/migrate.sh
      timeout: 1800
  ValidateService:
    - location: scripts/check.sh
      timeout: 30
file_exists_behavior: OVERWRITE
"#;

    fn problems(text: &str) -> Vec<Problem> {
        AppSpec::parse(text).expect_err("should be invalid").0
    }

    fn fields(text: &str) -> Vec<String> {
        problems(text).into_iter().map(|p| p.field).collect()
    }

    #[test]
    fn parses_a_complete_appspec() {
        let spec = AppSpec::parse(FULL).unwrap();
        assert_eq!(spec.os, Os::Linux);
        assert_eq!(spec.files.len(), 2);
        assert_eq!(spec.files[0].source, "/");
        assert_eq!(
            spec.file_exists_behavior,
            Some(FileExistsBehavior::Overwrite)
        );
        let permission = &spec.permissions[0];
        assert_eq!(permission.mode, Some(0o644));
        assert_eq!(permission.owner.as_deref(), Some("www-data"));
        assert_eq!(permission.acls, vec!["u:alice:rw", "d:g::r"]);
        assert_eq!(
            permission.context.as_ref().unwrap().kind,
            "httpd_sys_content_t"
        );
        assert_eq!(permission.types, vec![ObjectType::File]);
        assert_eq!(permission.except, vec!["/var/www/html/secret"]);
        let after = spec.scripts(LifecycleEvent::AfterInstall);
        assert_eq!(after.len(), 2);
        assert_eq!(after[0].timeout_secs, DEFAULT_HOOK_TIMEOUT_SECS);
        assert_eq!(after[0].runas.as_deref(), Some("deploy"));
        assert_eq!(after[1].timeout_secs, 1800);
        assert_eq!(
            spec.event_limit_secs(LifecycleEvent::AfterInstall),
            MAX_EVENT_SCRIPT_SECS,
            "the event's scripts share 3600 s"
        );
        assert_eq!(spec.event_limit_secs(LifecycleEvent::ValidateService), 30);
        assert_eq!(spec.event_limit_secs(LifecycleEvent::BeforeInstall), 0);
        assert!(spec.scripts(LifecycleEvent::BeforeInstall).is_empty());
        assert!(spec.scripts(LifecycleEvent::ApplicationStart).is_empty());
        assert_eq!(spec.hooks.len(), 4, "an empty event entry is kept");
        let warned: Vec<&str> = spec.warnings.iter().map(|w| w.field.as_str()).collect();
        assert_eq!(
            warned,
            ["hooks.AfterInstall"],
            "its timeouts add up past 3600 s"
        );
    }

    #[test]
    fn minimal_appspec_is_valid_and_version_may_be_quoted() {
        let spec = AppSpec::parse("version: '0.0'\nos: windows\n").unwrap();
        assert_eq!(spec.os, Os::Windows);
        assert!(spec.files.is_empty() && spec.hooks.is_empty());
    }

    #[test]
    fn version_and_os_are_required_and_checked() {
        assert_eq!(fields("os: linux"), vec!["version"]);
        assert_eq!(fields("version: 0.0"), vec!["os"]);
        let found = problems("version: 1.0\nos: Linux\n");
        assert_eq!(found.len(), 2);
        assert!(found[0].message.contains("must be 0.0"), "{found:?}");
        assert!(found[1].message.contains("linux or windows"), "{found:?}");
    }

    #[test]
    fn a_host_takes_an_old_revisions_long_timeout_as_the_hour() {
        let text = "version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: a.sh\n      timeout: 7200\n";
        assert!(
            AppSpec::parse(text).is_err(),
            "refused at lint and registration"
        );
        let spec = AppSpec::parse_on_host(text).expect("deployable on a host");
        assert_eq!(
            spec.scripts(LifecycleEvent::AfterInstall)[0].timeout_secs,
            3600
        );
        assert_eq!(spec.warnings[0].field, "hooks.AfterInstall[0].timeout");
        // Nonsense is refused on a host too.
        assert!(AppSpec::parse_on_host(&text.replace("7200", "-1")).is_err());
        assert!(AppSpec::parse_on_host(&text.replace("7200", "soon")).is_err());
    }

    #[test]
    fn hook_timeouts_are_bounded_by_codedeploys_hour() {
        for timeout in ["3601", "18446744073709551615", "1e30", "-5"] {
            let found = problems(&format!(
                "version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: a.sh\n      timeout: {timeout}\n"
            ));
            assert_eq!(found.len(), 1, "{timeout}: {found:?}");
            assert_eq!(found[0].field, "hooks.AfterInstall[0].timeout");
            assert!(found[0].message.contains("from 1 to 3600"), "{found:?}");
        }
        let spec = AppSpec::parse(
            "version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: a.sh\n      timeout: 3600\n    - location: b.sh\n",
        )
        .expect("two scripts of an hour each are CodeDeploy's defaults");
        assert_eq!(spec.warnings.len(), 1, "{:?}", spec.warnings);
        assert_eq!(spec.warnings[0].field, "hooks.AfterInstall");
        assert_eq!(spec.event_limit_secs(LifecycleEvent::AfterInstall), 3600);
    }

    #[test]
    fn reports_every_problem_not_only_the_first() {
        let text = r#"
version: 0.0
os: linux
files:
  - source: app
  - destination: /srv
permissions:
  - owner: root
    mode: 0999
    acls: [q:alice:rw]
    type: [socket]
hooks:
  AfterInstall:
    - location: a.sh
      timeout: 0
    - timeout: 10
  Install:
    - location: b.sh
  AfterDeploy: []
file_exists_behavior: overwrite
"#;
        assert_eq!(
            fields(text),
            vec![
                "files[0].destination",
                "files[1].source",
                "permissions[0].object",
                "permissions[0].mode",
                "permissions[0].acls[0]",
                "permissions[0].type[0]",
                "hooks.AfterInstall[0].timeout",
                "hooks.AfterInstall[1].location",
                "hooks.Install",
                "hooks.AfterDeploy",
                "file_exists_behavior",
            ]
        );
    }

    #[test]
    fn errors_say_what_is_allowed() {
        let found = problems(
            "version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: a.sh\n      timeout: soon\n",
        );
        assert_eq!(found[0].field, "hooks.AfterInstall[0].timeout");
        assert!(
            found[0]
                .message
                .contains("whole number of seconds from 1 to 3600"),
            "{}",
            found[0]
        );
        let found = problems("version: 0.0\nos: linux\nhooks:\n  Deploy: []\n");
        assert!(found[0].message.contains("ValidateService"), "{}", found[0]);
        let found = problems("version: 0.0\nos: linux\nhooks:\n  DownloadBundle: []\n");
        assert!(
            found[0].message.contains("cannot run scripts"),
            "{}",
            found[0]
        );
        let found = problems("version: 0.0\nos: linux\nfile_exists_behavior: KEEP\n");
        assert!(
            found[0].message.contains("DISALLOW, OVERWRITE, RETAIN"),
            "{}",
            found[0]
        );
    }

    #[test]
    fn yaml_syntax_errors_name_the_line() {
        let found = problems("version: 0.0\nos: linux\nhooks: [unclosed\n");
        assert_eq!(found.len(), 1);
        assert!(found[0].field.starts_with("appspec (line"), "{}", found[0]);
    }

    #[test]
    fn not_a_mapping_is_an_error() {
        assert_eq!(fields("- version: 0.0"), vec!["appspec"]);
        assert_eq!(fields(""), vec!["appspec"]);
    }

    #[test]
    fn unknown_top_level_keys_are_warnings() {
        let spec = AppSpec::parse("version: 0.0\nos: linux\nhook:\n  AfterInstall: []\n").unwrap();
        assert_eq!(spec.warnings.len(), 1);
        assert_eq!(spec.warnings[0].field, "hook");
    }

    #[test]
    fn unknown_keys_inside_entries_are_errors() {
        assert_eq!(
            fields(
                "version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: a.sh\n      timeout_seconds: 5\n"
            ),
            vec!["hooks.AfterInstall[0].timeout_seconds"]
        );
    }

    #[test]
    fn paths_that_leave_the_revision_are_refused() {
        assert_eq!(
            fields(
                "version: 0.0\nos: linux\nfiles:\n  - source: ../etc\n    destination: /srv\nhooks:\n  AfterInstall:\n    - location: scripts/../../x.sh\n"
            ),
            vec!["files[0].source", "hooks.AfterInstall[0].location"]
        );
    }

    #[test]
    fn windows_rules() {
        let spec = AppSpec::parse("version: 0.0\nos: windows\nfiles:\n  - source: app\n    destination: C:\\inetpub\\app\n").unwrap();
        assert_eq!(spec.files[0].destination, "C:\\inetpub\\app");
        assert_eq!(
            fields(
                "version: 0.0\nos: windows\nfiles:\n  - source: app\n    destination: /srv\npermissions:\n  - object: /srv\n    mode: 644\n"
            ),
            vec!["files[0].destination", "permissions"]
        );
        assert_eq!(
            fields(
                "version: 0.0\nos: windows\nhooks:\n  AfterInstall:\n    - location: a.ps1\n      runas: admin\n"
            ),
            vec!["hooks.AfterInstall[0].runas"]
        );
    }

    #[test]
    fn mode_accepts_up_to_four_octal_digits() {
        let mode = |m: &str| {
            AppSpec::parse(&format!(
                "version: 0.0\nos: linux\npermissions:\n  - object: /srv\n    mode: {m}\n"
            ))
            .map(|spec| spec.permissions[0].mode)
        };
        assert_eq!(mode("644"), Ok(Some(0o644)));
        assert_eq!(mode("'0755'"), Ok(Some(0o755)));
        assert_eq!(mode("4755"), Ok(Some(0o4755)));
        assert_eq!(mode("7"), Ok(Some(0o7)));
        assert!(mode("12345").is_err());
        assert!(mode("689").is_err());
        assert!(mode("rwx").is_err());
        assert!(mode("-1").is_err());
    }

    #[test]
    fn acl_syntax() {
        for ok in [
            "u:alice:rw",
            "user:alice:rwx",
            "u::rw-",
            "g:staff:r",
            "group::X",
            "m::rwx",
            "mask:r",
            "o::r",
            "other:-",
            "d:u:alice:rw",
            "default:o::r",
            "u:bob:7",
        ] {
            assert_eq!(check_acl(ok), Ok(()), "{ok}");
        }
        for bad in [
            "alice:rw",
            "u:alice",
            "u:alice:rq",
            "u:alice:",
            "d:",
            "x::r",
            "o:bob:r",
            "u:a:b:rw",
            "u:alice:77",
        ] {
            assert!(check_acl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn context_needs_a_type() {
        assert_eq!(
            fields(
                "version: 0.0\nos: linux\npermissions:\n  - object: /srv\n    context:\n      user: u\n"
            ),
            vec!["permissions[0].context.type"]
        );
    }

    #[test]
    fn referenced_paths_name_their_fields() {
        let spec = AppSpec::parse(FULL).unwrap();
        let refs = spec.referenced_paths();
        assert_eq!(refs[0], ("files[0].source".to_owned(), "/"));
        assert!(refs.contains(&(
            "hooks.AfterInstall[1].location".to_owned(),
            "/scripts/migrate.sh"
        )));
        assert_eq!(refs.len(), 2 + 4);
    }

    #[test]
    fn revision_relative_paths() {
        assert_eq!(
            revision_relative("/scripts/a.sh"),
            Some(Path::new("scripts/a.sh"))
        );
        assert_eq!(revision_relative("a/../b"), Some(Path::new("a/../b")));
        assert_eq!(revision_relative("/"), Some(Path::new("")));
        assert_eq!(revision_relative("a/../../b"), None);
        assert_eq!(revision_relative(".."), None);
    }
}
