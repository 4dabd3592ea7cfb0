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
    let spec = AppSpec::parse(
        "version: 0.0\nos: windows\nfiles:\n  - source: app\n    destination: C:\\inetpub\\app\n",
    )
    .unwrap();
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
