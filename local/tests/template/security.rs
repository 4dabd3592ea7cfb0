//! template.yaml from an attacker's side: what a function's role would let code running
//! in it do (launch, tag, delete, pass roles), what bounds a flood of reports, what is
//! kept and refused, what raises an alarm, and the hosts' policy that tests, the demo and
//! the benchmarks use being the template's.

use super::{resources_of_type, string, template};
use gantry_functions::adapters::MANAGED_TAG;
use gantry_tests::workspace_root;
use serde_norway::Value;
use std::collections::{BTreeMap, BTreeSet};

/// What the fleet policy's writes are, and what no other function may hold.
const FLEET_WRITES: [&str; 6] = [
    "ec2:RunInstances",
    "ec2:CreateTags",
    "ec2:TerminateInstances",
    "iam:PassRole",
    "autoscaling:CreateAutoScalingGroup",
    "autoscaling:DeleteAutoScalingGroup",
];

fn tagged<'a>(value: &'a Value, tag: &str) -> Option<&'a Value> {
    match value {
        Value::Tagged(tagged) if tagged.tag == tag => Some(&tagged.value),
        _ => None,
    }
}

/// A statement list's statements, with both branches of an `!If` taken.
fn statements_in(list: &Value) -> Vec<Value> {
    let mut found = Vec::new();
    for statement in list.as_sequence().into_iter().flatten() {
        match tagged(statement, "If") {
            Some(branches) => found.extend(
                branches
                    .as_sequence()
                    .expect("!If [condition, then, else]")
                    .iter()
                    .skip(1)
                    .filter(|branch| branch.is_mapping())
                    .cloned(),
            ),
            None => found.push(statement.clone()),
        }
    }
    found
}

/// Every statement of a function's role: its inline ones and those of the managed
/// policies it names. (SAM's policy templates, SQSPollerPolicy, grant only a queue's
/// receive and delete.)
fn statements_of(template: &Value, function: &str) -> Vec<Value> {
    let mut found = Vec::new();
    for policy in policies_of(template, function) {
        // `!If [condition, !Ref Policy, !Ref AWS::NoValue]`: the policy, when it holds.
        let policy = match tagged(policy, "If") {
            Some(branches) => &branches.as_sequence().expect("!If [condition, then, else]")[1],
            None => policy,
        };
        if let Some(name) = tagged(policy, "Ref") {
            let name = string(name);
            let resource = &template["Resources"][name.as_str()];
            assert_eq!(
                resource["Type"].as_str(),
                Some("AWS::IAM::ManagedPolicy"),
                "{function} names {name}"
            );
            found.extend(statements_in(
                &resource["Properties"]["PolicyDocument"]["Statement"],
            ));
        } else if policy.get("Statement").is_some() {
            found.extend(statements_in(&policy["Statement"]));
        }
    }
    found
}

fn policies_of<'a>(template: &'a Value, function: &str) -> &'a [Value] {
    template["Resources"][function]["Properties"]["Policies"]
        .as_sequence()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// A value or list of values (a tagged value, such as `!Sub [text, variables]`, is one).
fn listed(value: &Value) -> Vec<&Value> {
    match value {
        Value::Sequence(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        one => vec![one],
    }
}

fn actions(statement: &Value) -> Vec<String> {
    listed(&statement["Action"])
        .into_iter()
        .map(string)
        .collect()
}

/// Whether the statement's actions cover `action`, wildcards included.
fn allows(statement: &Value, action: &str) -> bool {
    statement["Effect"].as_str() == Some("Allow")
        && actions(statement)
            .iter()
            .any(|granted| match granted.strip_suffix('*') {
                Some(prefix) => action.starts_with(prefix),
                None => granted.eq_ignore_ascii_case(action),
            })
}

/// A resource's text: a plain ARN, a `!Sub`'s template, a `!GetAtt`'s `Name.Attribute`,
/// a `!Ref`'s name.
fn resource_text(resource: &Value) -> String {
    if let Some(sub) = tagged(resource, "Sub") {
        return match sub.as_sequence() {
            Some(parts) => string(&parts[0]),
            None => string(sub),
        };
    }
    if let Some(attribute) = tagged(resource, "GetAtt") {
        return format!("!GetAtt {}", string(attribute));
    }
    if let Some(name) = tagged(resource, "Ref") {
        return format!("!Ref {}", string(name));
    }
    string(resource)
}

fn functions(template: &Value) -> Vec<String> {
    resources_of_type(template, "AWS::Serverless::Function")
        .into_iter()
        .map(|(name, _)| name.to_owned())
        .collect()
}

fn condition<'a>(statement: &'a Value, operator: &str, key: &str) -> Option<&'a Value> {
    statement["Condition"][operator].get(key)
}

fn managed_key(prefix: &str) -> String {
    format!("{prefix}/{MANAGED_TAG}")
}

#[test]
fn no_function_may_launch_tag_delete_or_pass_roles_unconditionally() {
    let template = template();
    for function in functions(&template) {
        for statement in statements_of(&template, &function) {
            let Some(action) = FLEET_WRITES.iter().find(|a| allows(&statement, a)) else {
                continue;
            };
            let sid = string(&statement["Sid"]);
            assert!(
                statement["Condition"]
                    .as_mapping()
                    .is_some_and(|conditions| !conditions.is_empty()),
                "{function}.{sid} allows {action} without a condition"
            );
            for resource in listed(&statement["Resource"]) {
                let text = resource_text(resource);
                assert!(
                    text != "*" && !text.ends_with(":*"),
                    "{function}.{sid} allows {action} on {text}"
                );
            }
        }
    }
}

#[test]
fn instances_and_groups_are_made_only_tagged_for_gantry_and_from_a_tagged_launch_template() {
    let template = template();
    let request_tag = managed_key("aws:RequestTag");
    let resource_tag = managed_key("aws:ResourceTag");
    for function in functions(&template) {
        for statement in statements_of(&template, &function) {
            let sid = string(&statement["Sid"]);
            let resources: Vec<String> = listed(&statement["Resource"])
                .into_iter()
                .map(resource_text)
                .collect();
            let tagged_true = |operator: &str, key: &str| {
                condition(&statement, operator, key).and_then(Value::as_str) == Some("true")
            };
            if allows(&statement, "ec2:RunInstances") {
                let template_only =
                    condition(&statement, "ArnLike", "ec2:LaunchTemplate").is_some();
                let tagged_template = resources.iter().all(|r| r.ends_with(":launch-template/*"))
                    && tagged_true("StringEquals", &resource_tag);
                assert!(
                    template_only || tagged_template,
                    "{function}.{sid}: RunInstances other than from a launch template tagged {MANAGED_TAG}=true"
                );
                if resources
                    .iter()
                    .any(|r| r.contains(":instance/") || r.contains(":volume/"))
                {
                    assert!(
                        tagged_true("StringEquals", &request_tag),
                        "{function}.{sid}: instances launched without {request_tag}=true"
                    );
                }
            }
            if allows(&statement, "autoscaling:CreateAutoScalingGroup") {
                assert!(
                    tagged_true("StringEquals", &request_tag),
                    "{function}.{sid}: groups created without {request_tag}=true"
                );
                assert!(
                    resources
                        .iter()
                        .all(|r| r.ends_with(":autoScalingGroupName/CodeDeploy_*")),
                    "{function}.{sid}: groups created under other names than a copy's (green_fleet::copy_name)"
                );
            }
            if allows(&statement, "autoscaling:DeleteAutoScalingGroup")
                || allows(&statement, "ec2:TerminateInstances")
            {
                assert!(
                    tagged_true("StringEquals", &resource_tag),
                    "{function}.{sid}: deletes what is not tagged {resource_tag}=true"
                );
            }
            if allows(&statement, "ec2:CreateTags") {
                assert_eq!(
                    condition(&statement, "StringEquals", "ec2:CreateAction")
                        .and_then(Value::as_str),
                    Some("RunInstances"),
                    "{function}.{sid}: tags what it does not create"
                );
            }
        }
    }
    assert!(
        gantry_functions::green_fleet::copy_name("web", "d-1").starts_with("CodeDeploy_"),
        "copies' names (green_fleet::copy_name) start as the policy allows"
    );
}

#[test]
fn roles_are_passed_only_from_the_parameters_path_and_only_to_ec2_or_auto_scaling() {
    let template = template();
    let parameter = &template["Parameters"]["PassableRolePath"];
    assert!(
        parameter["Default"]
            .as_str()
            .is_some_and(|path| path.starts_with('/') && path.ends_with('/') && path != "/"),
        "PassableRolePath needs a default narrower than every role: {parameter:?}"
    );
    for function in functions(&template) {
        for statement in statements_of(&template, &function) {
            if !allows(&statement, "iam:PassRole") {
                continue;
            }
            let sid = string(&statement["Sid"]);
            for resource in listed(&statement["Resource"]) {
                let text = resource_text(resource);
                assert!(
                    text == "!GetAtt LifecycleHookRole.Arn"
                        || text.ends_with(":role${PassableRolePath}*"),
                    "{function}.{sid} passes {text}: only the hook role or roles under PassableRolePath"
                );
            }
            let services = condition(&statement, "StringEquals", "iam:PassedToService")
                .unwrap_or_else(|| panic!("{function}.{sid} passes roles to any service"));
            for service in listed(services) {
                assert!(
                    ["ec2.amazonaws.com", "autoscaling.amazonaws.com"]
                        .contains(&string(service).as_str()),
                    "{function}.{sid} passes roles to {service:?}"
                );
            }
        }
    }
}

/// The handler sources of a function's binary.
fn handler_sources(binary: &str) -> Vec<std::path::PathBuf> {
    let handlers = workspace_root().join("functions/src/handlers");
    match binary {
        "lifecycle" => vec![handlers.join("autoscaling.rs")],
        "api" => std::iter::once(handlers.join("api.rs"))
            .chain(
                std::fs::read_dir(handlers.join("api"))
                    .expect("handlers/api")
                    .map(|entry| entry.expect("an entry").path()),
            )
            .collect(),
        other => vec![handlers.join(format!("{}.rs", other.replace('-', "_")))],
    }
}

/// The functions whose handler sources name `module` (e.g. `engine::`), by template
/// resource.
fn functions_whose_handlers_use(template: &Value, module: &str) -> BTreeSet<String> {
    resources_of_type(template, "AWS::Serverless::Function")
        .into_iter()
        .filter(|(_, function)| {
            let binary = string(&function["Metadata"]["BuildProperties"]["Binary"]);
            handler_sources(&binary).iter().any(|path| {
                std::fs::read_to_string(path)
                    .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
                    .contains(module)
            })
        })
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// The functions whose handlers run the deployment engine, whose effects copy and delete
/// groups (`ProvisionFleet`, `RemoveReplacement`, `TerminateOriginal`,
/// `AdoptReplacement`), carried out by the lifecycle function, by template resource.
fn engine_functions(template: &Value) -> BTreeSet<String> {
    functions_whose_handlers_use(template, "engine::")
}

/// The fleet policy (every write of blue/green) sits on the lifecycle function alone,
/// the one that carries out fleet effects (`handlers::carries_fleet_effects`); the other
/// functions that run the engine hand those effects to it and only read fleets; push
/// neither.
#[test]
fn only_the_function_that_copies_and_deletes_groups_holds_the_fleet_policy() {
    let template = template();
    let engine = engine_functions(&template);
    assert!(
        !engine.contains("PushFunction") && engine.contains("BatchAdvanceFunction"),
        "{engine:?}"
    );
    let resources = resources_of_type(&template, "AWS::Serverless::Function");
    let mut holders = Vec::new();
    for (function, resource) in resources {
        let binary = string(&resource["Metadata"]["BuildProperties"]["Binary"]);
        let refs: Vec<String> = policies_of(&template, function)
            .iter()
            .filter_map(|policy| tagged(policy, "Ref"))
            .map(string)
            .collect();
        let holds = refs.iter().any(|name| name == "BlueGreenFleetPolicy");
        assert_eq!(
            holds,
            gantry_functions::handlers::carries_fleet_effects(&binary),
            "{function}: the fleet policy goes to exactly the function that carries out fleet effects"
        );
        if holds {
            holders.push(function.to_owned());
        } else {
            for statement in statements_of(&template, function) {
                // The api puts Gantry's hooks on groups, handing Auto Scaling the
                // stack's own notification role: that role, and no other.
                let hook_role = tagged(&statement["Resource"], "GetAtt")
                    .is_some_and(|attribute| string(attribute) == "LifecycleHookRole.Arn");
                for action in FLEET_WRITES {
                    assert!(
                        !allows(&statement, action) || (action == "iam:PassRole" && hook_role),
                        "{function} carries out no fleet effect but may {action}"
                    );
                }
            }
        }
        assert_eq!(
            refs.iter().any(|name| name == "FleetReadPolicy"),
            engine.contains(function),
            "{function}: fleet reads go to exactly the functions that run the engine"
        );
    }
    assert_eq!(holders, ["LifecycleFunction"]);
}

/// Every function that runs the engine polls a deployment's alarms at its batch
/// boundaries and ticks (the lifecycle function too, since the schedule fans ticks out to
/// it): without DescribeAlarms, a poll fails and stops every deployment that watches
/// alarms. The functions that run ticks heartbeat launches' lifecycle actions.
#[test]
fn every_function_that_runs_the_engine_may_poll_alarms_and_tickers_may_heartbeat() {
    let template = template();
    for function in engine_functions(&template) {
        let statements = statements_of(&template, &function);
        assert!(
            statements
                .iter()
                .any(|statement| allows(statement, "cloudwatch:DescribeAlarms")),
            "{function} runs the engine but may not poll alarms"
        );
    }
    for function in ["BatchAdvanceFunction", "LifecycleFunction"] {
        assert!(
            statements_of(&template, function)
                .iter()
                .any(|statement| allows(statement, "autoscaling:RecordLifecycleActionHeartbeat")),
            "{function} runs ticks but may not heartbeat a launch"
        );
    }
}

/// The functions that carry out a Lambda deployment's effects
/// (functions/src/lambda_deployments.rs, through adapters/aliases.rs): the api
/// (CreateDeployment of Lambda groups, PutLifecycleEventHookExecutionStatus,
/// StopDeployment), create-deployment, and batch-advance, whose tick steps them.
const LAMBDA_DEPLOYERS: [&str; 3] = [
    "ApiFunction",
    "BatchAdvanceFunction",
    "CreateDeploymentFunction",
];

/// Every Lambda action a Lambda deployment calls (adapters/aliases.rs: GetAlias,
/// UpdateAlias, GetFunctionConfiguration for a published TargetVersion, and Invoke with
/// InvocationType Event).
const LAMBDA_ACTIONS: [&str; 4] = [
    "lambda:GetAlias",
    "lambda:UpdateAlias",
    "lambda:GetFunctionConfiguration",
    "lambda:InvokeFunction",
];

/// What a Lambda deployment does to the function whose alias it shifts: only on one
/// tagged gantry:managed=true.
const ALIAS_ACTIONS: [&str; 3] = [
    "lambda:GetAlias",
    "lambda:UpdateAlias",
    "lambda:GetFunctionConfiguration",
];

/// The ARNs of this account's functions in this Region.
const FUNCTION_ARNS: &str =
    "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:";

fn sid(statement: &Value) -> String {
    statement.get("Sid").map(string).unwrap_or_default()
}

/// Lambda permissions sit on exactly the functions that step Lambda deployments (the
/// handlers that name `lambda_deployments::` are among them; create-deployment's
/// CreateDeployment of Lambda groups is on its way), and each of them may poll the
/// deployment's alarms too.
#[test]
fn only_the_functions_that_carry_out_lambda_deployments_may_read_shift_or_invoke() {
    let template = template();
    let deployers: BTreeSet<String> = LAMBDA_DEPLOYERS.iter().map(|f| f.to_string()).collect();
    let stepping = functions_whose_handlers_use(&template, "lambda_deployments::");
    assert!(
        !stepping.is_empty() && stepping.is_subset(&deployers),
        "functions that step Lambda deployments: {stepping:?}, not among {deployers:?}"
    );
    for function in functions(&template) {
        let statements = statements_of(&template, &function);
        let deploys = deployers.contains(&function);
        for action in LAMBDA_ACTIONS {
            assert_eq!(
                statements.iter().any(|statement| allows(statement, action)),
                deploys,
                "{function}: {action} goes to exactly {LAMBDA_DEPLOYERS:?}"
            );
        }
        if deploys {
            assert!(
                statements
                    .iter()
                    .any(|statement| allows(statement, "cloudwatch:DescribeAlarms")),
                "{function} steps Lambda deployments but may not poll their alarms"
            );
        }
    }
}

/// As CodeDeploy's AWSCodeDeployRoleForLambdaLimited: an alias is read or moved, and a
/// version looked up, only on a function its owner tagged gantry:managed=true (Lambda
/// authorizes GetAlias, UpdateAlias and GetFunctionConfiguration on the function, which
/// takes aws:ResourceTag), in this account and Region.
#[test]
fn aliases_are_read_and_shifted_only_on_functions_tagged_for_gantry() {
    let template = template();
    let resource_tag = managed_key("aws:ResourceTag");
    let mut checked = 0;
    for function in functions(&template) {
        for statement in statements_of(&template, &function) {
            let Some(action) = ALIAS_ACTIONS
                .into_iter()
                .find(|action| allows(&statement, action))
            else {
                continue;
            };
            let sid = sid(&statement);
            assert_eq!(
                condition(&statement, "StringEquals", &resource_tag).and_then(Value::as_str),
                Some("true"),
                "{function}.{sid}: {action} on functions not tagged {resource_tag}=true"
            );
            let resources = listed(&statement["Resource"]);
            assert!(!resources.is_empty(), "{function}.{sid}: no Resource");
            for resource in resources {
                let text = resource_text(resource);
                assert!(
                    text.starts_with(FUNCTION_ARNS),
                    "{function}.{sid}: {action} on {text}, not this account's functions in this Region"
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked >= LAMBDA_DEPLOYERS.len(),
        "{checked} statements allow alias reads or writes; every Lambda deployer needs one"
    );
}

/// Hooks are invoked only when named with LambdaHookPrefix (CodeDeploy's own
/// `CodeDeployHook_` by default), a prefix of function-name characters that cannot be
/// empty or hold a wildcard, the one the functions read (GANTRY_LAMBDA_HOOK_PREFIX).
#[test]
fn hooks_are_invoked_only_when_named_with_the_hook_prefix() {
    let template = template();
    let parameter = &template["Parameters"]["LambdaHookPrefix"];
    assert_eq!(
        parameter["Default"].as_str(),
        Some("CodeDeployHook_"),
        "CodeDeploy's own hook prefix"
    );
    assert!(
        !parameter["MinLength"].is_null() && number(&template, &parameter["MinLength"]) >= 1,
        "an empty LambdaHookPrefix would let every function be invoked"
    );
    let pattern = string(&parameter["AllowedPattern"]);
    let class = pattern
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .filter(|(_, repeat)| *repeat == "+" || repeat.starts_with('{'))
        .map(|(class, _)| class)
        .unwrap_or_else(|| {
            panic!("LambdaHookPrefix's AllowedPattern is one character class: {pattern}")
        });
    for wildcard in ['*', '?', ':', '$', '.', '/'] {
        assert!(
            !class.contains(wildcard),
            "LambdaHookPrefix may hold {wildcard:?}: {pattern}"
        );
    }
    assert_eq!(
        tagged(
            &template["Globals"]["Function"]["Environment"]["Variables"]["GANTRY_LAMBDA_HOOK_PREFIX"],
            "Ref"
        )
        .map(string)
        .as_deref(),
        Some("LambdaHookPrefix"),
        "the functions read the prefix the policy allows"
    );

    let hooks = [
        format!("{FUNCTION_ARNS}${{LambdaHookPrefix}}*"),
        format!("{FUNCTION_ARNS}${{LambdaHookPrefix}}*:*"),
    ];
    let mut checked = 0;
    for function in functions(&template) {
        for statement in statements_of(&template, &function) {
            if !allows(&statement, "lambda:InvokeFunction") {
                continue;
            }
            let sid = sid(&statement);
            let resources = listed(&statement["Resource"]);
            assert!(!resources.is_empty(), "{function}.{sid}: no Resource");
            for resource in resources {
                let text = resource_text(resource);
                assert!(
                    hooks.contains(&text),
                    "{function}.{sid} invokes {text}: only functions named with LambdaHookPrefix"
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked >= LAMBDA_DEPLOYERS.len(),
        "{checked} statements allow invoking hooks; every Lambda deployer needs one"
    );
}

/// No function holds lambda:* (or any Lambda wildcard, or an action Lambda deployments
/// never call), any action on every resource's behalf through NotAction or NotResource,
/// or a Lambda action on anything but this account's functions in this Region.
#[test]
fn no_function_holds_lambda_wildcards_or_lambda_actions_on_every_resource() {
    let template = template();
    for function in functions(&template) {
        for statement in statements_of(&template, &function) {
            let sid = sid(&statement);
            for negated in ["NotAction", "NotResource"] {
                assert!(
                    statement.get(negated).is_none(),
                    "{function}.{sid} uses {negated}"
                );
            }
            let mut lambda = false;
            for action in actions(&statement) {
                assert_ne!(action, "*", "{function}.{sid} allows every action");
                if !action.to_ascii_lowercase().starts_with("lambda:") {
                    continue;
                }
                lambda = true;
                assert!(
                    !action.contains(['*', '?']),
                    "{function}.{sid} allows {action}"
                );
                assert!(
                    LAMBDA_ACTIONS
                        .iter()
                        .any(|called| called.eq_ignore_ascii_case(&action)),
                    "{function}.{sid} allows {action}, which no Lambda deployment calls"
                );
            }
            if !lambda {
                continue;
            }
            for resource in listed(&statement["Resource"]) {
                let text = resource_text(resource);
                assert!(
                    text != "*" && text.starts_with(FUNCTION_ARNS),
                    "{function}.{sid} allows Lambda actions on {text}"
                );
            }
        }
    }
}

/// A host reads a bundle only through the presigned link in its command (the
/// dispatching function signs it for that revision, until shortly after the command's
/// start_by): no host policy grants any S3 action, so no host reads another
/// application's revisions.
#[test]
fn hosts_read_no_bundle_of_their_own_accord() {
    let template = template();
    for policy in ["Ec2HostPolicy", "OnPremisesHostPolicy"] {
        let document = &template["Resources"][policy]["Properties"]["PolicyDocument"];
        let statements = statements_in(&document["Statement"]);
        assert!(!statements.is_empty(), "{policy} has statements");
        for statement in statements {
            assert!(
                actions(&statement)
                    .iter()
                    .all(|action| !action.to_ascii_lowercase().starts_with("s3:")),
                "{policy} lets a host reach S3 itself: {statement:?}"
            );
        }
    }
}

/// The GitHub token (GitHubTokenSecret) is read by the functions that check revisions
/// (those that read bundles) and by hosts, only when the stack names one, and nothing
/// but that one secret or parameter.
#[test]
fn the_github_token_is_read_only_where_revisions_are_checked_and_only_that_secret() {
    let template = template();
    let reads_token = |statement: &Value| {
        allows(statement, "secretsmanager:GetSecretValue") || allows(statement, "ssm:GetParameter")
    };
    let only_the_secret = |owner: &str, statement: &Value| {
        assert_eq!(
            tagged(&statement["Resource"], "Ref").map(string).as_deref(),
            Some("GitHubTokenSecret"),
            "{owner} reads more than the GitHub token: {statement:?}"
        );
    };
    let mut readers = BTreeSet::new();
    let mut checkers = BTreeSet::new();
    for function in functions(&template) {
        for statement in statements_of(&template, &function) {
            // The pipeline function registers only the S3 artifacts CodePipeline hands it.
            if sid(&statement) == "ReadBundles" && function != "PipelineFunction" {
                checkers.insert(function.clone());
            }
            if reads_token(&statement) {
                only_the_secret(&function, &statement);
                readers.insert(function.clone());
            }
        }
    }
    assert!(!checkers.is_empty());
    assert_eq!(readers, checkers, "who reads the GitHub token");
    assert_eq!(
        template["Resources"]["GitHubTokenReadPolicy"]["Condition"].as_str(),
        Some("HasGitHubToken"),
        "the functions' token policy exists only when the stack has a token"
    );
    for policy in ["Ec2HostPolicy", "OnPremisesHostPolicy"] {
        let list = &template["Resources"][policy]["Properties"]["PolicyDocument"]["Statement"];
        let mut found = false;
        for item in list.as_sequence().expect("statements") {
            match tagged(item, "If") {
                Some(branches) => {
                    let branches = branches.as_sequence().expect("!If");
                    if reads_token(&branches[1]) {
                        assert_eq!(string(&branches[0]), "HasGitHubToken", "{policy}");
                        only_the_secret(policy, &branches[1]);
                        found = true;
                    }
                }
                None => assert!(
                    !reads_token(item),
                    "{policy} reads the token whether the stack has one or not"
                ),
            }
        }
        assert!(
            found,
            "{policy}: hosts read the token for private repositories"
        );
    }
}

/// A number the template gives directly or through a parameter's default.
fn number(template: &Value, value: &Value) -> u64 {
    match tagged(value, "Ref") {
        Some(name) => {
            let parameter = &template["Parameters"][string(name).as_str()];
            string(&parameter["Default"])
                .parse()
                .expect("a numeric default")
        }
        None => string(value).parse().expect("a number"),
    }
}

#[test]
fn every_function_logs_to_a_group_that_expires() {
    let template = template();
    for function in functions(&template) {
        let group =
            &template["Resources"][function.as_str()]["Properties"]["LoggingConfig"]["LogGroup"];
        let name = tagged(group, "Ref")
            .map(string)
            .unwrap_or_else(|| panic!("{function} logs to Lambda's own group, kept forever"));
        let resource = &template["Resources"][name.as_str()];
        assert_eq!(
            resource["Type"].as_str(),
            Some("AWS::Logs::LogGroup"),
            "{name}"
        );
        let days = number(&template, &resource["Properties"]["RetentionInDays"]);
        assert!((1..=3653).contains(&days), "{name} keeps logs {days} days");
    }
}

#[test]
fn report_and_lifecycle_floods_are_bounded_by_reserved_concurrency() {
    let template = template();
    for (function, event) in [
        ("BatchAdvanceFunction", "Reports"),
        ("LifecycleFunction", "Lifecycle"),
    ] {
        let properties = &template["Resources"][function]["Properties"];
        let reserved = &properties["ReservedConcurrentExecutions"];
        assert!(
            !reserved.is_null(),
            "{function} has no reserved concurrency"
        );
        let reserved = number(&template, reserved);
        assert!(reserved >= 2, "{function}: {reserved}");
        // SQS's pollers never invoke past the reservation: a throttled batch would count
        // as a receive and send honest reports towards the dead-letter queue.
        let maximum = number(
            &template,
            &properties["Events"][event]["Properties"]["ScalingConfig"]["MaximumConcurrency"],
        );
        assert!(maximum <= reserved, "{function}: {maximum} > {reserved}");
    }
}

#[test]
fn the_bundle_bucket_refuses_requests_without_tls() {
    let template = template();
    let denies = resources_of_type(&template, "AWS::S3::BucketPolicy")
        .into_iter()
        .filter(|(_, policy)| {
            tagged(&policy["Properties"]["Bucket"], "Ref")
                .map(string)
                .as_deref()
                == Some("BundleBucket")
        })
        .flat_map(|(_, policy)| statements_in(&policy["Properties"]["PolicyDocument"]["Statement"]))
        .any(|statement| {
            statement["Effect"].as_str() == Some("Deny")
                && statement["Principal"].as_str() == Some("*")
                && actions(&statement) == ["s3:*"]
                && condition(&statement, "Bool", "aws:SecureTransport").and_then(Value::as_str)
                    == Some("false")
                && listed(&statement["Resource"]).len() == 2
        });
    assert!(
        denies,
        "no policy on BundleBucket denies s3:* without TLS, bucket and objects"
    );
}

fn alarms(template: &Value) -> Vec<&Value> {
    resources_of_type(template, "AWS::CloudWatch::Alarm")
        .into_iter()
        .map(|(_, alarm)| &alarm["Properties"])
        .collect()
}

#[test]
fn dead_letters_stale_reports_and_forged_reports_raise_alarms() {
    let template = template();
    let on_queue = |alarm: &Value, queue: &str| {
        alarm["Dimensions"].as_sequence().is_some_and(|dimensions| {
            dimensions.iter().any(|d| {
                string(&d["Name"]) == "QueueName"
                    && tagged(&d["Value"], "GetAtt").map(string)
                        == Some(format!("{queue}.QueueName"))
            })
        })
    };
    let mut dead_letter_queues: BTreeSet<String> =
        BTreeSet::from(["CommandsDeadLetterQueue".into()]);
    for (_, queue) in resources_of_type(&template, "AWS::SQS::Queue") {
        if let Some(target) = tagged(
            &queue["Properties"]["RedrivePolicy"]["deadLetterTargetArn"],
            "GetAtt",
        ) {
            dead_letter_queues.insert(string(target).trim_end_matches(".Arn").to_owned());
        }
    }
    for queue in &dead_letter_queues {
        assert!(
            alarms(&template).iter().any(|alarm| {
                on_queue(alarm, queue)
                    && string(&alarm["MetricName"]) == "ApproximateNumberOfMessagesVisible"
                    && number(&template, &alarm["Threshold"]) == 0
                    && string(&alarm["ComparisonOperator"]) == "GreaterThanThreshold"
            }),
            "no alarm on a message in {queue}"
        );
    }
    assert!(
        alarms(&template)
            .iter()
            .any(|alarm| on_queue(alarm, "ReportsQueue")
                && string(&alarm["MetricName"]) == "ApproximateAgeOfOldestMessage"),
        "no alarm on the reports queue's oldest message"
    );

    // Forged reports are only logged: a metric filter counts the line batch-advance logs.
    let filters = resources_of_type(&template, "AWS::Logs::MetricFilter");
    let (_, filter) = filters
        .iter()
        .find(|(_, filter)| {
            tagged(&filter["Properties"]["LogGroupName"], "Ref")
                .map(string)
                .as_deref()
                == Some("BatchAdvanceLogGroup")
        })
        .expect("a metric filter on batch-advance's log group");
    let pattern = string(&filter["Properties"]["FilterPattern"]);
    let phrase = pattern
        .strip_prefix('"')
        .and_then(|p| p.strip_suffix('"'))
        .unwrap_or_else(|| panic!("the filter matches one quoted phrase: {pattern}"));
    let source =
        std::fs::read_to_string(workspace_root().join("functions/src/handlers/batch_advance.rs"))
            .expect("batch_advance.rs");
    let logged = source
        .split("ApplyError::ForeignSender")
        .nth(1)
        .expect("batch-advance drops foreign senders' reports");
    assert!(
        logged.contains(&format!("\"{phrase}\"")),
        "batch-advance no longer logs {phrase:?} for a forged report"
    );
    let transformation = &filter["Properties"]["MetricTransformations"][0];
    let metric = string(&transformation["MetricName"]);
    let namespace = resource_text(&transformation["MetricNamespace"]);
    assert!(
        alarms(&template)
            .iter()
            .any(|alarm| string(&alarm["MetricName"]) == metric
                && resource_text(&alarm["Namespace"]) == namespace
                && number(&template, &alarm["Threshold"]) == 0),
        "no alarm on {namespace} {metric}"
    );
}

/// The values gantry-local runs with, as the template's intrinsics would give them.
fn local_value(name: &str) -> String {
    match name {
        "AWS::Partition" => "aws".into(),
        "AWS::Region" => "us-east-1".into(),
        "AWS::AccountId" => "123456789012".into(),
        "Prefix" => "gantry".into(),
        "RevisionPrefix" => "revisions/".into(),
        "BundleBucket" => "gantry-revisions".into(),
        "ReportsQueue.Arn" => "arn:aws:sqs:us-east-1:123456789012:gantry-reports".into(),
        other => panic!("the host policy uses {other}, which this test does not render"),
    }
}

fn substitute(text: &str, variables: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("a closed ${...}") + start;
        let name = &rest[start + 2..end];
        match name.strip_prefix('!') {
            Some(literal) => out.push_str(&format!("${{{literal}}}")),
            None => out.push_str(
                &variables
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| local_value(name)),
            ),
        }
        rest = &rest[end + 1..];
    }
    out + rest
}

/// What `!Ref AWS::NoValue` renders to: left out of the list it is in.
const NO_VALUE: &str = "\u{0}AWS::NoValue";

/// The template's value as CloudFormation would make it for gantry-local's stack
/// (CreateBundleBucket true, HasGitHubToken false).
fn render(value: &Value) -> serde_json::Value {
    use serde_json::Value as Json;
    match value {
        Value::Tagged(tagged) if tagged.tag == "Sub" => match tagged.value.as_sequence() {
            Some(parts) => {
                let variables = parts[1]
                    .as_mapping()
                    .expect("!Sub's variables")
                    .iter()
                    .map(|(k, v)| (string(k), render(v).as_str().expect("a string").to_owned()))
                    .collect();
                Json::String(substitute(&string(&parts[0]), &variables))
            }
            None => Json::String(substitute(&string(&tagged.value), &BTreeMap::new())),
        },
        Value::Tagged(tagged) if tagged.tag == "Ref" && string(&tagged.value) == "AWS::NoValue" => {
            Json::String(NO_VALUE.into())
        }
        Value::Tagged(tagged) if tagged.tag == "Ref" || tagged.tag == "GetAtt" => {
            Json::String(local_value(&string(&tagged.value)))
        }
        Value::Tagged(tagged) if tagged.tag == "If" => {
            let branches = tagged.value.as_sequence().expect("!If's list");
            let holds = match string(&branches[0]).as_str() {
                "CreateBundleBucket" => true,
                // gantry-local's stack keeps no GitHub token.
                "HasGitHubToken" => false,
                other => panic!("the condition {other} is not rendered"),
            };
            render(&branches[if holds { 1 } else { 2 }])
        }

        Value::Tagged(tagged) => panic!("{} is not rendered", tagged.tag),
        Value::Mapping(entries) => Json::Object(
            entries
                .iter()
                .map(|(key, value)| (string(key), render(value)))
                .collect(),
        ),
        Value::Sequence(items) => Json::Array(
            items
                .iter()
                .map(render)
                .filter(|item| item.as_str() != Some(NO_VALUE))
                .collect(),
        ),
        other => serde_json::to_value(other).expect("plain YAML is JSON"),
    }
}

#[test]
fn tests_the_demo_and_the_benchmarks_give_hosts_the_templates_policy() {
    let template = template();
    let rendered = render(&template["Resources"]["Ec2HostPolicy"]["Properties"]["PolicyDocument"]);
    let root = workspace_root();
    let shared: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("local/ec2-host-policy.json"))
            .expect("local/ec2-host-policy.json"),
    )
    .expect("local/ec2-host-policy.json is JSON");
    assert_eq!(
        rendered, shared,
        "template.yaml's Ec2HostPolicy and local/ec2-host-policy.json differ: change both"
    );
    for user in ["tests/src/lb_stack.rs", "demo/lb_stack.sh", "bench/lb.py"] {
        let text = std::fs::read_to_string(root.join(user)).expect(user);
        assert!(
            text.contains("local/ec2-host-policy.json")
                || text.contains("\"ec2-host-policy.json\""),
            "{user} does not read the shared host policy"
        );
        assert!(
            !text.contains("sqs:ReceiveMessage"),
            "{user} writes a host policy of its own"
        );
    }
}

#[test]
fn effects_given_up_raise_an_alarm_whichever_function_ran_the_engine() {
    let template = template();
    let source = std::fs::read_to_string(workspace_root().join("functions/src/engine.rs"))
        .expect("engine.rs");
    let filters = resources_of_type(&template, "AWS::Logs::MetricFilter");
    for function in engine_functions(&template) {
        let group =
            &template["Resources"][function.as_str()]["Properties"]["LoggingConfig"]["LogGroup"];
        let group = tagged(group, "Ref")
            .map(string)
            .expect("a log group of its own");
        let counted = filters.iter().any(|(_, filter)| {
            let filter = &filter["Properties"];
            let pattern = string(&filter["FilterPattern"]);
            let transformation = &filter["MetricTransformations"][0];
            tagged(&filter["LogGroupName"], "Ref").map(string).as_ref() == Some(&group)
                && string(&transformation["MetricName"]) == "FailedEffects"
                && pattern.len() > 2
                && source.contains(&format!("tracing::error!(?effect, %error, {pattern})"))
        });
        assert!(
            counted,
            "{function}: no FailedEffects filter on {group} matching engine.rs's line"
        );
    }
    assert!(
        alarms(&template)
            .iter()
            .any(|alarm| string(&alarm["MetricName"]) == "FailedEffects"),
        "no alarm on FailedEffects"
    );
}
