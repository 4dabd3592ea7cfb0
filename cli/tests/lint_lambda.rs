//! `gantry appspec lint` on AWS Lambda appspecs, run as the real binary: the kind is
//! detected, the Lambda parser's problems are listed as EC2/On-Premises ones are (one
//! `error: FIELD: MESSAGE` line each), and the summary says which kind was checked.

use std::path::Path;
use std::process::{Command, Output};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn lint(path: &Path) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["appspec", "lint"])
        .arg(path)
        .output()
        .expect("gantry runs");
    Run {
        code: status.code().expect("gantry exits"),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

fn lint_text(name: &str, text: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    lint(&path)
}

/// The user guide's example ("AppSpec File example for an AWS Lambda deployment").
const VALID_YAML: &str = "version: 0.0
Resources:
  - myLambdaFunction:
      Type: AWS::Lambda::Function
      Properties:
        Name: \"myLambdaFunction\"
        Alias: \"myLambdaFunctionAlias\"
        CurrentVersion: \"1\"
        TargetVersion: \"2\"
Hooks:
  - BeforeAllowTraffic: \"LambdaFunctionToValidateBeforeTrafficShift\"
  - AfterAllowTraffic: \"LambdaFunctionToValidateAfterTrafficShift\"
";

#[test]
fn a_valid_lambda_appspec_is_checked_as_one() {
    let run = lint_text("appspec.yml", VALID_YAML);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(
            "valid (function myLambdaFunction, alias myLambdaFunctionAlias, version 1 to 2; BeforeAllowTraffic runs LambdaFunctionToValidateBeforeTrafficShift, AfterAllowTraffic runs LambdaFunctionToValidateAfterTrafficShift), checked as an AWS Lambda appspec"
        ),
        "{}",
        run.stdout
    );
}

#[test]
fn a_json_lambda_appspec_without_hooks_is_valid() {
    let run = lint_text(
        "appspec.json",
        r#"{"version": 0.0, "Resources": [{"fn": {"Type": "AWS::Lambda::Function",
            "Properties": {"Name": "orders", "Alias": "live", "CurrentVersion": 3, "TargetVersion": 4}}}]}"#,
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("valid (function orders, alias live, version 3 to 4; no hooks), checked as an AWS Lambda appspec"),
        "{}",
        run.stdout
    );
}

#[test]
fn an_invalid_lambda_appspec_lists_every_problem_with_its_field() {
    let run = lint_text(
        "appspec.yml",
        "version: 0.0
Resources:
  - myLambdaFunction:
      Type: AWS::Lambda::Function
      Properties:
        Name: myLambdaFunction
        Alias: live
        CurrentVersion: 2
        TargetVersion: $LATEST
Hooks:
  - BeforeInstall: check
",
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert!(
        lines[0].starts_with("error: Resources[0].myLambdaFunction.Properties.TargetVersion: "),
        "{}",
        lines[0]
    );
    assert!(lines[1].starts_with("error: Hooks[0]"), "{}", lines[1]);
    assert!(
        run.stderr
            .contains("2 problems found, checked as an AWS Lambda appspec"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_ec2_appspec_says_which_kind_was_checked() {
    let run = lint_text("appspec.yml", "version: 0.0\nos: linux\n");
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("checked as an EC2/On-Premises appspec"),
        "{}",
        run.stdout
    );
    let run = lint_text("appspec.yml", "version: 0.0\nos: beos\n");
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("1 problem found, checked as an EC2/On-Premises appspec"),
        "{}",
        run.stderr
    );
}
