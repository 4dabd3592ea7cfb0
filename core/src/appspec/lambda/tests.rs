use super::*;
use crate::appspec::{AppSpecKind, detect};
use proptest::prelude::*;

/// The user guide's "AppSpec File example for an AWS Lambda deployment".
const GUIDE: &str = r#"version: 0.0
Resources:
  - myLambdaFunction:
      Type: AWS::Lambda::Function
      Properties:
        Name: "myLambdaFunction"
        Alias: "myLambdaFunctionAlias"
        CurrentVersion: "1"
        TargetVersion: "2"
Hooks:
  - BeforeAllowTraffic: "LambdaFunctionToValidateBeforeTrafficShift"
  - AfterAllowTraffic: "LambdaFunctionToValidateAfterTrafficShift"
"#;

/// The same example in JSON, indented with tabs as the user guide's is.
const GUIDE_JSON: &str = "{\n\t\"version\": 0.0,\n\t\"Resources\": [{\n\t\t\"myLambdaFunction\": {\n\t\t\t\"Type\": \"AWS::Lambda::Function\",\n\t\t\t\"Properties\": {\n\t\t\t\t\"Name\": \"myLambdaFunction\",\n\t\t\t\t\"Alias\": \"myLambdaFunctionAlias\",\n\t\t\t\t\"CurrentVersion\": \"1\",\n\t\t\t\t\"TargetVersion\": \"2\"\n\t\t\t}\n\t\t}\n\t}],\n\t\"Hooks\": [{\n\t\t\t\"BeforeAllowTraffic\": \"LambdaFunctionToValidateBeforeTrafficShift\"\n\t\t},\n\t\t{\n\t\t\t\"AfterAllowTraffic\": \"LambdaFunctionToValidateAfterTrafficShift\"\n\t\t}\n\t]\n}\n";

/// The user guide's "AppSpec File example for an Amazon ECS deployment", shortened.
const ECS: &str = r#"version: 0.0
Resources:
  - TargetService:
      Type: AWS::ECS::Service
      Properties:
        TaskDefinition: "arn:aws:ecs:us-east-1:111222333444:task-definition/my-task-definition-family-name:1"
        LoadBalancerInfo:
          ContainerName: "SampleApplicationName"
          ContainerPort: 80
Hooks:
  - BeforeInstall: "LambdaFunctionToValidateBeforeInstall"
"#;

const PROPERTIES: &str = "Resources[0].fn.Properties";

/// An appspec whose one resource, `fn`, has these properties (one per line).
fn with_properties(properties: &[&str]) -> String {
    let mut text =
        "version: 0.0\nResources:\n  - fn:\n      Type: AWS::Lambda::Function\n      Properties:\n"
            .to_owned();
    for property in properties {
        text.push_str(&format!("        {property}\n"));
    }
    text
}

/// The guide's resource, with these `Hooks` lines after it.
fn with_hooks(hooks: &str) -> String {
    let resource = GUIDE.split("Hooks:").next().unwrap();
    format!("{resource}Hooks:\n{hooks}")
}

fn valid(properties: &[&str]) -> Result<LambdaAppSpec, Problems> {
    let defaults = [
        ("Name", "Name: app"),
        ("Alias", "Alias: live"),
        ("CurrentVersion", "CurrentVersion: 1"),
        ("TargetVersion", "TargetVersion: 2"),
    ];
    let mut lines: Vec<&str> = defaults
        .iter()
        .filter(|(key, _)| {
            !properties
                .iter()
                .any(|line| line.starts_with(&format!("{key}:")))
        })
        .map(|(_, line)| *line)
        .collect();
    lines.extend_from_slice(properties);
    LambdaAppSpec::parse(&with_properties(&lines))
}

fn problems(text: &str) -> Vec<Problem> {
    LambdaAppSpec::parse(text).expect_err("should be invalid").0
}

fn fields(text: &str) -> Vec<String> {
    problems(text).into_iter().map(|p| p.field).collect()
}

/// The one problem of an appspec, as `field: message`.
fn only(text: &str) -> String {
    let found = problems(text);
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].to_string()
}

fn property_problem(properties: &[&str]) -> String {
    let found = valid(properties).expect_err("should be invalid").0;
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].to_string()
}

#[test]
fn the_user_guides_example_parses() {
    let spec = LambdaAppSpec::parse(GUIDE).unwrap();
    assert_eq!(
        spec,
        LambdaAppSpec {
            function: LambdaFunction {
                logical_name: "myLambdaFunction".to_owned(),
                name: "myLambdaFunction".to_owned(),
                alias: "myLambdaFunctionAlias".to_owned(),
                current_version: 1,
                target_version: 2,
            },
            before_allow_traffic: Some("LambdaFunctionToValidateBeforeTrafficShift".to_owned()),
            after_allow_traffic: Some("LambdaFunctionToValidateAfterTrafficShift".to_owned()),
        }
    );
    assert_eq!(
        spec.hooks().collect::<Vec<_>>(),
        vec![
            (
                LambdaHook::BeforeAllowTraffic,
                "LambdaFunctionToValidateBeforeTrafficShift"
            ),
            (
                LambdaHook::AfterAllowTraffic,
                "LambdaFunctionToValidateAfterTrafficShift"
            ),
        ]
    );
    assert_eq!(parse(GUIDE), Ok(spec), "the free function is the same");
}

#[test]
fn the_json_example_parses_to_the_same_appspec() {
    assert_eq!(
        LambdaAppSpec::parse(GUIDE_JSON),
        LambdaAppSpec::parse(GUIDE)
    );
    let compact = r#"{"version":"0.0","Resources":[{"f":{"Type":"AWS::Lambda::Function","Properties":{"Name":"f","Alias":"live","CurrentVersion":3,"TargetVersion":"4"}}}]}"#;
    let spec = LambdaAppSpec::parse(compact).unwrap();
    assert_eq!(
        (spec.function.current_version, spec.function.target_version),
        (3, 4)
    );
    assert_eq!(spec.hooks().count(), 0);
}

#[test]
fn json_errors_name_fields_as_yaml_errors_do() {
    let yaml =
        with_hooks("  - BeforeAllowTraffic: a\n  - BeforeAllowTraffic: b\n  - Validate: c\n")
            .replace("TargetVersion: \"2\"", "TargetVersion: \"1\"")
            .replace("Alias: \"myLambdaFunctionAlias\"", "Alias: \"42\"")
            + "os: linux\n";
    let json = r#"{
    "version": 0.0,
    "Resources": [{"myLambdaFunction": {"Type": "AWS::Lambda::Function", "Properties": {
        "Name": "myLambdaFunction", "Alias": "42", "CurrentVersion": "1", "TargetVersion": "1"}}}],
    "Hooks": [{"BeforeAllowTraffic": "a"}, {"BeforeAllowTraffic": "b"}, {"Validate": "c"}],
    "os": "linux"
}"#;
    let from_yaml = problems(&yaml);
    assert_eq!(from_yaml.len(), 5, "{from_yaml:?}");
    assert_eq!(problems(json), from_yaml);
    assert_eq!(
        fields(json),
        vec![
            "os",
            "Resources[0].myLambdaFunction.Properties.Alias",
            "Resources[0].myLambdaFunction.Properties.TargetVersion",
            "Hooks[1].BeforeAllowTraffic",
            "Hooks[2].Validate",
        ]
    );
}

#[test]
fn the_reference_sections_lowercase_keys_are_read_too() {
    // The user guide's "AppSpec 'resources' section" writes every key in lowercase.
    let text = r#"version: 0.0
resources:
  - myLambdaFunction:
      type: "AWS::Lambda::Function"
      properties:
        name: myLambdaFunction
        alias: live
        currentversion: 1
        targetversion: 2
hooks:
  - beforeallowtraffic: check
"#;
    let spec = LambdaAppSpec::parse(text).unwrap();
    assert_eq!(spec.function.alias, "live");
    assert_eq!(spec.before_allow_traffic.as_deref(), Some("check"));
    // Paths keep the file's spelling.
    assert_eq!(
        only(&text.replace("targetversion: 2", "targetversion: 1")),
        "resources[0].myLambdaFunction.properties.targetversion: is the same as CurrentVersion (1); a deployment shifts the alias to another version"
    );
}

#[test]
fn a_key_given_twice_in_two_spellings_is_refused() {
    let text = GUIDE.replace(
        "        Alias: \"myLambdaFunctionAlias\"\n",
        "        Alias: \"myLambdaFunctionAlias\"\n        alias: other\n",
    );
    assert_eq!(
        only(&text),
        "Resources[0].myLambdaFunction.Properties.alias: repeats Alias (keys are read without regard to case)"
    );
    // The same spelling twice is a YAML error, which names the line.
    let text = GUIDE.replace(
        "        Alias: \"myLambdaFunctionAlias\"\n",
        "        Alias: \"myLambdaFunctionAlias\"\n        Alias: other\n",
    );
    assert_eq!(
        only(&text),
        "appspec (line 6, column 9): is not valid YAML: Resources[0].myLambdaFunction.Properties: duplicate entry with key \"Alias\" at line 6 column 9"
    );
}

#[test]
fn hooks_are_optional() {
    let resource = GUIDE.split("Hooks:").next().unwrap();
    for text in [
        resource.to_owned(),
        format!("{resource}Hooks:\n"),
        format!("{resource}Hooks: []\n"),
    ] {
        let spec = LambdaAppSpec::parse(&text).unwrap();
        assert_eq!(spec.before_allow_traffic, None, "{text}");
        assert_eq!(spec.after_allow_traffic, None, "{text}");
    }
    let spec = LambdaAppSpec::parse(&with_hooks("  - AfterAllowTraffic: after\n")).unwrap();
    assert_eq!(spec.hook(LambdaHook::BeforeAllowTraffic), None);
    assert_eq!(spec.hook(LambdaHook::AfterAllowTraffic), Some("after"));
    assert_eq!(
        spec.hooks().collect::<Vec<_>>(),
        vec![(LambdaHook::AfterAllowTraffic, "after")]
    );
}

#[test]
fn hooks_listed_in_either_order_keep_their_roles() {
    let spec = LambdaAppSpec::parse(&with_hooks(
        "  - AfterAllowTraffic: after\n  - BeforeAllowTraffic: before\n",
    ))
    .unwrap();
    assert_eq!(spec.before_allow_traffic.as_deref(), Some("before"));
    assert_eq!(spec.after_allow_traffic.as_deref(), Some("after"));
    assert_eq!(
        spec.hooks().map(|(hook, _)| hook).collect::<Vec<_>>(),
        LambdaHook::ALL,
        "in the order they run"
    );
}

#[test]
fn versions_may_be_numbers_or_strings() {
    for (current, target) in [("1", "2"), ("\"1\"", "\"2\""), ("'1'", "2"), ("1", "'2'")] {
        let spec = valid(&[
            &format!("CurrentVersion: {current}"),
            &format!("TargetVersion: {target}"),
        ])
        .unwrap();
        assert_eq!(
            (spec.function.current_version, spec.function.target_version),
            (1, 2),
            "{current} {target}"
        );
    }
    let spec = valid(&["CurrentVersion: 18446744073709551615", "TargetVersion: 7"]).unwrap();
    assert_eq!(spec.function.current_version, u64::MAX);
    // A rollback deployment shifts the alias back to an older version.
    let spec = valid(&["CurrentVersion: 9", "TargetVersion: 8"]).unwrap();
    assert_eq!(spec.function.target_version, 8);
}

#[test]
fn versions_must_be_published_version_numbers() {
    let field = format!("{PROPERTIES}.TargetVersion");
    assert_eq!(
        property_problem(&["TargetVersion: $LATEST"]),
        format!(
            "{field}: $LATEST is not a published version; an alias's traffic can shift only between published versions (1, 2, ...)"
        )
    );
    assert_eq!(
        property_problem(&["TargetVersion: \"$LATEST\""]),
        property_problem(&["TargetVersion: $LATEST"])
    );
    for (written, found) in [
        ("0", "\"0\""),
        ("\"01\"", "\"01\""),
        ("-1", "\"-1\""),
        ("1.5", "\"1.5\""),
        ("2.0", "\"2.0\""),
        ("prod", "\"prod\""),
        ("\" 2\"", "\" 2\""),
        ("\"\"", "\"\""),
    ] {
        assert_eq!(
            property_problem(&[&format!("TargetVersion: {written}")]),
            format!(
                "{field}: must be a published version number, a whole number from 1 such as 1 or \"2\", found {found}"
            ),
            "{written}"
        );
    }
    for (written, found) in [("[2]", "a list"), ("true", "true"), ("{v: 2}", "a mapping")] {
        assert_eq!(
            property_problem(&[&format!("TargetVersion: {written}")]),
            format!(
                "{field}: must be a published version number, a whole number from 1 such as 1 or \"2\", found {found}"
            ),
            "{written}"
        );
    }
    assert_eq!(
        property_problem(&["TargetVersion: \"18446744073709551616\""]),
        format!("{field}: 18446744073709551616 is too large to be a Lambda version")
    );
    assert_eq!(
        property_problem(&["TargetVersion:"]),
        format!("{field}: is required: a published version number such as 1")
    );
    assert_eq!(
        only(&with_properties(&[
            "Name: app",
            "Alias: live",
            "TargetVersion: 2"
        ])),
        format!("{PROPERTIES}.CurrentVersion: is required: a published version number such as 1")
    );
}

#[test]
fn the_two_versions_must_differ() {
    assert_eq!(
        property_problem(&["CurrentVersion: 3", "TargetVersion: \"3\""]),
        format!(
            "{PROPERTIES}.TargetVersion: is the same as CurrentVersion (3); a deployment shifts the alias to another version"
        )
    );
}

#[test]
fn version_must_be_0_0() {
    assert_eq!(
        LambdaAppSpec::parse(&GUIDE.replace("version: 0.0", "version: '0.0'")),
        LambdaAppSpec::parse(GUIDE)
    );
    assert_eq!(
        only(&GUIDE.replace("version: 0.0\n", "")),
        "version: is required and must be 0.0"
    );
    assert_eq!(
        only(&GUIDE.replace("version: 0.0", "version: 1.0")),
        "version: must be 0.0, found 1.0"
    );
    assert_eq!(
        only(&GUIDE.replace("version: 0.0", "Version: \"0\"")),
        "Version: must be 0.0, found \"0\""
    );
}

#[test]
fn exactly_one_resource() {
    let resource = "  - fn:\n      Type: AWS::Lambda::Function\n      Properties:\n        Name: app\n        Alias: live\n        CurrentVersion: 1\n        TargetVersion: 2\n";
    let three = format!("version: 0.0\nResources:\n{resource}{resource}{resource}");
    assert_eq!(
        only(&three),
        "Resources: lists 3 resources; a Lambda deployment deploys exactly one function, so list one AWS::Lambda::Function resource and deploy other functions in deployments of their own"
    );
    // Each resource is checked too.
    let broken = format!(
        "version: 0.0\nResources:\n{resource}{}",
        resource.replace("Alias: live", "Alias: '7'")
    );
    assert_eq!(
        fields(&broken),
        vec!["Resources", "Resources[1].fn.Properties.Alias"]
    );

    assert_eq!(
        only("version: 0.0\nResources: []\n"),
        "Resources: must be a list of one AWS::Lambda::Function resource, found an empty list"
    );
    assert_eq!(
        only("version: 0.0\n"),
        "Resources: is required: a list of one AWS::Lambda::Function resource"
    );
    assert_eq!(
        only("version: 0.0\nresources:\n"),
        "resources: is required: a list of one AWS::Lambda::Function resource"
    );
    // CloudFormation's shape, a mapping of resources, is not the appspec's.
    assert_eq!(
        only(
            "version: 0.0\nResources:\n  fn:\n    Type: AWS::Lambda::Function\n    Properties: {}\n"
        ),
        "Resources: must be a list of one AWS::Lambda::Function resource, found a mapping"
    );
}

#[test]
fn a_resource_maps_one_name_to_its_type_and_properties() {
    // The logical name forgotten.
    assert_eq!(
        only(
            "version: 0.0\nResources:\n  - Type: AWS::Lambda::Function\n    Properties:\n      Name: app\n"
        ),
        "Resources[0]: names no resource: give it a name of your choice, as `- myFunction:`, and put its Type and Properties under that name"
    );
    assert_eq!(
        only("version: 0.0\nResources:\n  - a: {}\n    b: {}\n"),
        "Resources[0]: must map one name to its resource, as `- myFunction:` with its Type and Properties under it, found 2 keys"
    );
    assert_eq!(
        only("version: 0.0\nResources:\n  - app\n"),
        "Resources[0]: must be a mapping of keys to values, found \"app\""
    );
    assert_eq!(
        only("version: 0.0\nResources:\n  - fn: AWS::Lambda::Function\n"),
        "Resources[0].fn: must be a mapping of keys to values, found \"AWS::Lambda::Function\""
    );
    let text = GUIDE.replace(
        "      Type: AWS::Lambda::Function\n",
        "      Type: AWS::Lambda::Function\n      DependsOn: other\n",
    );
    assert_eq!(
        only(&text),
        "Resources[0].myLambdaFunction.DependsOn: is not a known key (allowed: Type, Properties)"
    );
}

#[test]
fn type_must_be_a_lambda_function() {
    let field = "Resources[0].myLambdaFunction.Type";
    assert_eq!(
        only(&GUIDE.replace("      Type: AWS::Lambda::Function\n", "")),
        format!("{field}: is required and must be AWS::Lambda::Function")
    );
    assert_eq!(
        only(&GUIDE.replace("AWS::Lambda::Function", "AWS::Lambda::Alias")),
        format!("{field}: must be AWS::Lambda::Function, found \"AWS::Lambda::Alias\"")
    );
    assert_eq!(
        only(&GUIDE.replace("AWS::Lambda::Function", "aws::lambda::function")),
        format!(
            "{field}: must be AWS::Lambda::Function, found \"aws::lambda::function\" (type names are case-sensitive)"
        )
    );
    let found = problems(ECS);
    assert_eq!(
        found[0].to_string(),
        "Resources[0].TargetService.Type: must be AWS::Lambda::Function, found \"AWS::ECS::Service\"; Gantry deploys to EC2/On-Premises and AWS Lambda, not Amazon ECS"
    );
}

#[test]
fn properties_are_required_and_known() {
    assert_eq!(
        only("version: 0.0\nResources:\n  - fn:\n      Type: AWS::Lambda::Function\n"),
        "Resources[0].fn.Properties: is required: Name, Alias, CurrentVersion, TargetVersion"
    );
    assert_eq!(
        fields(&with_properties(&[])),
        vec!["Resources[0].fn.Properties"],
        "an empty Properties is nothing"
    );
    assert_eq!(
        problems(&with_properties(&["Description: x"]))
            .into_iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>(),
        vec![
            format!(
                "{PROPERTIES}.Description: is not a known key (allowed: Name, Alias, CurrentVersion, TargetVersion)"
            ),
            format!("{PROPERTIES}.Name: is required"),
            format!("{PROPERTIES}.Alias: is required"),
            format!(
                "{PROPERTIES}.CurrentVersion: is required: a published version number such as 1"
            ),
            format!(
                "{PROPERTIES}.TargetVersion: is required: a published version number such as 1"
            ),
        ]
    );
}

#[test]
fn name_is_a_function_name_or_arn() {
    for name in [
        "app",
        "my-function_2",
        "0",
        "arn:aws:lambda:us-east-1:123456789012:function:app",
        "arn:aws-cn:lambda:cn-north-1:123456789012:function:app",
        "arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:app",
        "arn:aws-iso-b:lambda:us-isob-east-1:123456789012:function:app",
    ] {
        let spec = valid(&[&format!("Name: \"{name}\"")]).unwrap();
        assert_eq!(spec.function.name, name);
        assert_eq!(
            spec.function.function_name(),
            name.rsplit(':').next().unwrap()
        );
    }
    let spec = valid(&["Name: 12345"]).expect("a YAML number is its text");
    assert_eq!(spec.function.name, "12345");
    assert_eq!(
        valid(&[&format!("Name: {}", "f".repeat(64))])
            .unwrap()
            .function
            .name
            .len(),
        64
    );
}

#[test]
fn name_refusals_say_what_is_allowed() {
    let field = format!("{PROPERTIES}.Name");
    let forms = "expected a function name (1 to 64 letters, digits, hyphens or underscores) or a function ARN (arn:aws:lambda:<region>:<account>:function:<name>)";
    let refused = |name: &str| property_problem(&[&format!("Name: \"{name}\"")]);
    assert_eq!(
        refused("my function"),
        format!(
            "{field}: \"my function\" is not a Lambda function: a function name has only letters, digits, hyphens and underscores; {forms}"
        )
    );
    assert_eq!(
        refused("my.function"),
        format!(
            "{field}: \"my.function\" is not a Lambda function: a function name has only letters, digits, hyphens and underscores; {forms}"
        )
    );
    let long = "f".repeat(65);
    assert_eq!(
        refused(&long),
        format!(
            "{field}: \"{long}\" is not a Lambda function: the function name is 65 characters long, over Lambda's 64; {forms}"
        )
    );
    assert_eq!(
        refused("app:live"),
        format!(
            "{field}: \"app:live\" names the alias or version \"live\"; give the function without it (app) and its alias in Alias"
        )
    );
    assert_eq!(
        refused("arn:aws:lambda:us-east-1:123456789012:function:app:3"),
        format!(
            "{field}: \"arn:aws:lambda:us-east-1:123456789012:function:app:3\" names the alias or version \"3\"; give the function without it (arn:aws:lambda:us-east-1:123456789012:function:app) and its alias in Alias"
        )
    );
    assert_eq!(
        refused("123456789012:function:app"),
        format!(
            "{field}: \"123456789012:function:app\" is not a Lambda function: a partial ARN; give the function's name or its full ARN; {forms}"
        )
    );
    for (arn, why) in [
        (
            "arn:aws:s3:us-east-1:123456789012:function:app",
            "the ARN is of \"s3\", not lambda",
        ),
        (
            "arn:aws:lambda:us-east:123456789012:function:app",
            "\"us-east\" is not an AWS Region (such as us-east-1)",
        ),
        (
            "arn:aws:lambda:us-east-1:12345:function:app",
            "\"12345\" is not an AWS account ID (12 digits)",
        ),
        (
            "arn:azure:lambda:us-east-1:123456789012:function:app",
            "\"azure\" is not an AWS partition (aws, aws-cn, aws-us-gov, ...)",
        ),
        (
            "arn:aws:lambda:us-east-1:123456789012:layer:app",
            "the ARN is of a \"layer\", not a function",
        ),
        (
            "arn:aws:lambda:us-east-1:123456789012:function",
            "an ARN with the wrong number of parts",
        ),
        (
            "arn:aws:lambda:us-east-1:123456789012:function:",
            "the function name is empty",
        ),
        ("a:b:c", "too many ':'"),
    ] {
        assert_eq!(
            refused(arn),
            format!("{field}: \"{arn}\" is not a Lambda function: {why}; {forms}"),
            "{arn}"
        );
    }
    assert_eq!(
        property_problem(&["Name: \"  \""]),
        format!("{field}: must not be empty")
    );
    assert_eq!(
        property_problem(&["Name: [app]"]),
        format!("{field}: must be text, found a list")
    );
}

#[test]
fn alias_follows_lambdas_rule() {
    let field = format!("{PROPERTIES}.Alias");
    for alias in ["live", "v2", "2v", "my_alias-1", "-", "_"] {
        let spec = valid(&[&format!("Alias: \"{alias}\"")]).unwrap();
        assert_eq!(spec.function.alias, alias);
    }
    let longest = "a".repeat(128);
    assert_eq!(
        valid(&[&format!("Alias: {longest}")])
            .unwrap()
            .function
            .alias,
        longest
    );
    assert_eq!(
        property_problem(&["Alias: 42"]),
        format!(
            "{field}: \"42\" is not an alias name: it must not be only digits, which Lambda reads as a version"
        )
    );
    assert_eq!(
        property_problem(&["Alias: \"007\""]),
        format!(
            "{field}: \"007\" is not an alias name: it must not be only digits, which Lambda reads as a version"
        )
    );
    for alias in ["my alias", "live:1", "$LATEST", "prod.v2", &"a".repeat(129)] {
        assert_eq!(
            property_problem(&[&format!("Alias: \"{alias}\"")]),
            format!(
                "{field}: \"{alias}\" is not an alias name: 1 to 128 letters, digits, hyphens or underscores"
            ),
            "{alias}"
        );
    }
    assert_eq!(
        only(&with_properties(&[
            "Name: app",
            "CurrentVersion: 1",
            "TargetVersion: 2"
        ])),
        format!("{field}: is required")
    );
}

#[test]
fn hook_functions_may_be_qualified() {
    for function in [
        "validate",
        "validate:live",
        "validate:3",
        "validate:$LATEST",
        "arn:aws:lambda:eu-west-1:123456789012:function:validate",
        "arn:aws:lambda:eu-west-1:123456789012:function:validate:live",
        "arn:aws:lambda:eusc-de-east-1:123456789012:function:validate",
    ] {
        let spec = LambdaAppSpec::parse(&with_hooks(&format!(
            "  - BeforeAllowTraffic: \"{function}\"\n"
        )))
        .unwrap();
        assert_eq!(spec.before_allow_traffic.as_deref(), Some(function));
    }
}

#[test]
fn hook_refusals_name_the_hook() {
    let qualified_forms = "expected a function name (1 to 64 letters, digits, hyphens or underscores) or a function ARN (arn:aws:lambda:<region>:<account>:function:<name>), either optionally followed by :<alias>, :<version> or :$LATEST";
    assert_eq!(
        only(&with_hooks(
            "  - AfterAllowTraffic: \"validate:bad.qualifier\"\n"
        )),
        format!(
            "Hooks[0].AfterAllowTraffic: \"validate:bad.qualifier\" is not a Lambda function: \"bad.qualifier\" is not an alias, a version or $LATEST; {qualified_forms}"
        )
    );
    assert_eq!(
        only(&with_hooks("  - AfterAllowTraffic: \"validate:\"\n")),
        format!(
            "Hooks[0].AfterAllowTraffic: \"validate:\" is not a Lambda function: \"\" is not an alias, a version or $LATEST; {qualified_forms}"
        )
    );
    assert_eq!(
        only(&with_hooks("  - BeforeAllowTraffic:\n")),
        "Hooks[0].BeforeAllowTraffic: must name the Lambda function to run, found nothing"
    );
    assert_eq!(
        only(&with_hooks("  - BeforeAllowTraffic: [a, b]\n")),
        "Hooks[0].BeforeAllowTraffic: must be text, found a list"
    );
}

#[test]
fn a_hook_listed_twice_is_refused() {
    assert_eq!(
        only(&with_hooks(
            "  - BeforeAllowTraffic: one\n  - AfterAllowTraffic: after\n  - BeforeAllowTraffic: two\n"
        )),
        "Hooks[2].BeforeAllowTraffic: is listed twice (first at Hooks[0]); each hook runs one function"
    );
    assert_eq!(
        only(&with_hooks(
            "  - AfterAllowTraffic: one\n  - afterallowtraffic: two\n"
        )),
        "Hooks[1].afterallowtraffic: is listed twice (first at Hooks[0]); each hook runs one function"
    );
}

#[test]
fn only_the_two_lambda_hooks_are_allowed() {
    for name in [
        "BeforeInstall",
        "AfterInstall",
        "AllowTraffic",
        "ValidateService",
        "PreTraffic",
    ] {
        assert_eq!(
            only(&with_hooks(&format!("  - {name}: validate\n"))),
            format!(
                "Hooks[0].{name}: is not a lifecycle event of the AWS Lambda platform (allowed: BeforeAllowTraffic, AfterAllowTraffic)"
            )
        );
    }
}

#[test]
fn hooks_are_a_list_of_one_key_mappings() {
    assert_eq!(
        only(&with_hooks("  BeforeAllowTraffic: validate\n")),
        "Hooks: must be a list of hooks, each `- BeforeAllowTraffic: FunctionName` or `- AfterAllowTraffic: FunctionName`, found a mapping"
    );
    assert_eq!(
        only(&with_hooks(
            "  - BeforeAllowTraffic: before\n    AfterAllowTraffic: after\n"
        )),
        "Hooks[0]: must map one hook to its function, as `- BeforeAllowTraffic: FunctionName`, found 2 keys"
    );
    assert_eq!(
        only(&with_hooks("  - {}\n")),
        "Hooks[0]: must map one hook to its function, as `- BeforeAllowTraffic: FunctionName`, found 0 keys"
    );
    assert_eq!(
        only(&with_hooks("  - validate\n")),
        "Hooks[0]: must be a mapping of keys to values, found \"validate\""
    );
}

#[test]
fn unknown_top_level_keys_are_refused() {
    assert_eq!(
        only(&format!("{GUIDE}Description: my deployment\n")),
        "Description: is not a key of a Lambda appspec (allowed: version, Resources, Hooks)"
    );
}

#[test]
fn ec2_sections_are_refused_as_such() {
    for section in [
        "os: linux",
        "files:\n  - source: /\n    destination: /srv",
        "permissions: []",
        "file_exists_behavior: OVERWRITE",
        "OS: linux",
    ] {
        let key = section.split(':').next().unwrap();
        assert_eq!(
            only(&format!("{GUIDE}{section}\n")),
            format!(
                "{key}: belongs to EC2/On-Premises appspecs; a Lambda appspec has only version, Resources, Hooks"
            )
        );
    }
}

#[test]
fn reports_every_problem_not_only_the_first() {
    let text = r#"
version: 0.1
os: linux
Resources:
  - fn:
      Type: AWS::Lambda::Function
      Properties:
        Name: "fn:live"
        Alias: "1"
        CurrentVersion: $LATEST
        TargetVersion: 0
        Memory: 128
Hooks:
  - BeforeAllowTraffic: "bad name"
  - AfterInstall: x
  - BeforeAllowTraffic: y
"#;
    assert_eq!(
        fields(text),
        vec![
            "os",
            "version",
            "Resources[0].fn.Properties.Memory",
            "Resources[0].fn.Properties.Name",
            "Resources[0].fn.Properties.Alias",
            "Resources[0].fn.Properties.CurrentVersion",
            "Resources[0].fn.Properties.TargetVersion",
            "Hooks[0].BeforeAllowTraffic",
            "Hooks[1].AfterInstall",
            "Hooks[2].BeforeAllowTraffic",
        ]
    );
}

#[test]
fn syntax_errors_and_non_mappings() {
    let found = problems("version: 0.0\nResources: [unclosed\n");
    assert_eq!(found.len(), 1);
    assert!(found[0].field.starts_with("appspec (line"), "{}", found[0]);
    assert!(
        found[0].message.starts_with("is not valid YAML"),
        "{}",
        found[0]
    );
    let found = problems("{\"version\": 0.0, \"Resources\": [}\n");
    assert!(
        found[0].field.starts_with("appspec (line 1"),
        "{}",
        found[0]
    );
    assert_eq!(
        only("- version: 0.0"),
        "appspec: must be a mapping of keys to values, found a list"
    );
    assert_eq!(
        only(""),
        "appspec: must be a mapping of keys to values, found nothing"
    );
    assert_eq!(
        fields(&format!("{GUIDE}1: one\n")),
        vec!["appspec"],
        "a key that is not a name"
    );
}

#[test]
fn check_function_reads_the_parts() {
    assert_eq!(
        check_function("app", Qualifier::Refused),
        Ok(FunctionRef {
            name: "app",
            arn: None,
            qualifier: None
        })
    );
    assert_eq!(
        check_function("app:live", Qualifier::Allowed),
        Ok(FunctionRef {
            name: "app",
            arn: None,
            qualifier: Some("live")
        })
    );
    assert_eq!(
        check_function(
            "arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:app:$LATEST",
            Qualifier::Allowed
        ),
        Ok(FunctionRef {
            name: "app",
            arn: Some(FunctionArn {
                partition: "aws-us-gov",
                region: "us-gov-west-1",
                account: "123456789012"
            }),
            qualifier: Some("$LATEST")
        })
    );
    assert!(check_function("app:live", Qualifier::Refused).is_err());
    assert!(check_function("", Qualifier::Allowed).is_err());
    assert!(check_function("app:$latest", Qualifier::Allowed).is_err());
    // Invoke's 170 characters, for a qualified ARN with a long alias.
    let arn = format!(
        "arn:aws:lambda:us-east-1:123456789012:function:{}:{}",
        "f".repeat(64),
        "a".repeat(60)
    );
    assert_eq!(arn.len(), 172);
    assert_eq!(
        check_function(&arn, Qualifier::Allowed),
        Err(format!(
            "{arn:?} is not a Lambda function: it is 172 characters long, over Lambda's 170; expected a function name (1 to 64 letters, digits, hyphens or underscores) or a function ARN (arn:aws:lambda:<region>:<account>:function:<name>), either optionally followed by :<alias>, :<version> or :$LATEST"
        ))
    );
}

#[test]
fn regions() {
    for region in [
        "us-east-1",
        "eu-central-2",
        "ap-southeast-4",
        "cn-northwest-1",
        "us-gov-east-1",
        "us-iso-east-1",
        "us-isob-east-1",
        "eusc-de-east-1",
    ] {
        assert!(is_region(region), "{region}");
    }
    for region in [
        "us-east",
        "us-east-12",
        "USA-east-1",
        "u-east-1",
        "us--1",
        "us-gov-west",
        "us-isoxy-east-1",
        "us-mil-east-1",
        "",
    ] {
        assert!(!is_region(region), "{region}");
    }
}

#[test]
fn hook_names() {
    assert_eq!(
        LambdaHook::parse("BeforeAllowTraffic"),
        Some(LambdaHook::BeforeAllowTraffic)
    );
    assert_eq!(
        LambdaHook::parse("afterallowtraffic"),
        Some(LambdaHook::AfterAllowTraffic)
    );
    assert_eq!(LambdaHook::parse("AllowTraffic"), None);
    for hook in LambdaHook::ALL {
        assert_eq!(LambdaHook::parse(hook.name()), Some(hook));
        assert_eq!(hook.to_string(), hook.name());
    }
    assert_eq!(LambdaHook::NAMES, LambdaHook::ALL.map(LambdaHook::name));
}

#[test]
fn detect_tells_lambda_from_ec2() {
    assert_eq!(detect(GUIDE), AppSpecKind::Lambda);
    assert_eq!(detect(GUIDE_JSON), AppSpecKind::Lambda);
    // Broken Lambda appspecs still go to the Lambda parser, which says what is wrong.
    assert_eq!(
        detect(&GUIDE.replace("AWS::Lambda::Function", "AWS::Lambda::Functon")),
        AppSpecKind::Lambda
    );
    assert_eq!(detect(ECS), AppSpecKind::Lambda);
    assert_eq!(
        detect(&format!("{GUIDE}os: linux\n")),
        AppSpecKind::Lambda,
        "a Lambda function with an EC2 key; the Lambda parser refuses os"
    );
    assert_eq!(
        detect("version: 0.0\nHooks:\n  - BeforeAllowTraffic: check\n"),
        AppSpecKind::Lambda,
        "Resources forgotten"
    );
    assert_eq!(
        detect("version: 0.0\nos: linux\nresources:\n  fn:\n    type: AWS::Lambda::Function\n"),
        AppSpecKind::Lambda,
        "CloudFormation's shape of resources"
    );
    // EC2/on-premises appspecs, including ones with neither os nor Resources.
    for text in [
        "version: 0.0\nos: linux\n",
        "version: 0.0\nos: linux\nfiles:\n  - source: /\n    destination: /srv\nhooks:\n  AfterInstall:\n    - location: a.sh\n",
        "version: 0.0\nhooks:\n  AfterInstall:\n    - location: a.sh\n",
        "version: 0.0\nfiles: []\n",
        "version: 0.0\nos: linux\nResources: [x]\n",
        "version: 0.0\n",
        "",
        "- a list",
        "version: [unclosed",
    ] {
        assert_eq!(detect(text), AppSpecKind::Ec2OnPremises, "{text}");
    }
    assert_eq!(AppSpecKind::Lambda.to_string(), "AWS Lambda");
    assert_eq!(AppSpecKind::Ec2OnPremises.to_string(), "EC2/On-Premises");
}

#[test]
fn the_two_parsers_refuse_each_others_files() {
    assert!(crate::appspec::AppSpec::parse(GUIDE).is_err());
    assert_eq!(
        problems("version: 0.0\nos: linux\n")
            .into_iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>(),
        vec![
            "os: belongs to EC2/On-Premises appspecs; a Lambda appspec has only version, Resources, Hooks",
            "Resources: is required: a list of one AWS::Lambda::Function resource",
        ]
    );
}

fn function_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,64}"
}

fn alias_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,128}".prop_filter("not only digits", |alias| {
        !alias.bytes().all(|b| b.is_ascii_digit())
    })
}

fn function_arn() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["aws", "aws-cn", "aws-us-gov", "aws-iso-b"]),
        "(eusc-)?[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]{1,10}-[0-9]",
        "[0-9]{12}",
        function_name(),
    )
        .prop_map(|(partition, region, account, name)| {
            format!("arn:{partition}:lambda:{region}:{account}:function:{name}")
        })
}

proptest! {
    #[test]
    fn valid_names_round_trip(
        name in prop_oneof![function_name(), function_arn()],
        alias in alias_name(),
        current in 1u64..,
        target in 1u64..,
        before in prop::option::of(prop_oneof![
            function_name(),
            function_arn(),
            // Within Invoke's 170 characters.
            (function_name(), "[A-Za-z0-9_-]{1,105}").prop_map(|(f, q)| format!("{f}:{q}")),
            (function_arn(), prop_oneof![Just("$LATEST".to_owned()), "[a-z_]{1,20}"])
                .prop_map(|(f, q)| format!("{f}:{q}")),
            (function_name(), 1u64..).prop_map(|(f, v)| format!("{f}:{v}")),
        ]),
        quoted_versions in any::<bool>(),
    ) {
        prop_assume!(current != target);
        let version = |v: u64| if quoted_versions { format!("\"{v}\"") } else { v.to_string() };
        let mut text = format!(
            "version: 0.0\nResources:\n  - logical:\n      Type: AWS::Lambda::Function\n      Properties:\n        Name: \"{name}\"\n        Alias: \"{alias}\"\n        CurrentVersion: {}\n        TargetVersion: {}\n",
            version(current),
            version(target),
        );
        if let Some(before) = &before {
            text.push_str(&format!("Hooks:\n  - BeforeAllowTraffic: \"{before}\"\n"));
        }
        prop_assert_eq!(detect(&text), AppSpecKind::Lambda);
        let spec = LambdaAppSpec::parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(spec.function.function_name(), name.rsplit(':').next().unwrap());
        prop_assert_eq!(
            spec,
            LambdaAppSpec {
                function: LambdaFunction {
                    logical_name: "logical".to_owned(),
                    name,
                    alias,
                    current_version: current,
                    target_version: target,
                },
                before_allow_traffic: before,
                after_allow_traffic: None,
            }
        );
    }

    #[test]
    fn the_checks_never_panic_and_accept_only_lambdas_characters(text in "\\PC{0,80}") {
        if let Ok(found) = check_function(&text, Qualifier::Allowed) {
            prop_assert!(is_name(found.name) && found.name.len() <= 64);
            prop_assert!(text.ends_with(found.name) || found.qualifier.is_some());
        }
        if check_alias(&text).is_ok() {
            prop_assert!(is_name(&text) && !text.bytes().all(|b| b.is_ascii_digit()));
        }
        if let Ok(version) = check_version(&text) {
            prop_assert_eq!(version.to_string(), text);
        }
    }

    #[test]
    fn parse_never_panics(text in "\\PC{0,200}") {
        let _ = LambdaAppSpec::parse(&text);
        let _ = detect(&text);
    }
}
