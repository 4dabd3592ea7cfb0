//! Validation of an appspec's YAML tree: the [`Checker`] walks it section by section,
//! collecting every error and warning with the path of its field, and builds the
//! [`AppSpec`] it describes; with the ACL entry syntax and the wording of found values.

use super::{
    AppSpec, DEFAULT_HOOK_TIMEOUT_SECS, FileExistsBehavior, FileMapping, HookScript,
    MAX_EVENT_SCRIPT_SECS, ObjectType, Os, Permission, Problem, SelinuxContext, revision_relative,
};
use crate::lifecycle::LifecycleEvent;
use serde_norway::Value;

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
pub(super) struct Checker {
    pub(super) errors: Vec<Problem>,
    pub(super) warnings: Vec<Problem>,
    /// Timeouts over [`MAX_EVENT_SCRIPT_SECS`] become it, with a warning (on a host).
    pub(super) clamp_timeouts: bool,
}

impl Checker {
    fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Problem::new(field, message));
    }

    pub(super) fn document(&mut self, document: &Value) -> Option<AppSpec> {
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

/// How a found value reads in a message.
pub(super) fn describe(value: &Value) -> String {
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
