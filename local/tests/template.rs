//! template.yaml against the code: what gantry-local creates (against moto) must be what
//! the template creates, every handler binary must have its function, and every function
//! must get exactly the environment the handlers read. Drift fails the build.

use gantry_functions::control::Settings;
use gantry_tests::local::GantryLocal;
use gantry_tests::moto::Moto;
use gantry_tests::workspace_root;
use serde_norway::Value;
use std::collections::{BTreeMap, BTreeSet};

#[path = "template/security.rs"]
mod security;

const BINARY: &str = env!("CARGO_BIN_EXE_gantry-local");

fn template() -> Value {
    let path = workspace_root().join("template.yaml");
    let text = std::fs::read_to_string(&path).expect("template.yaml exists");
    serde_norway::from_str(&text).expect("template.yaml is YAML")
}

fn resources_of_type<'a>(template: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    template["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .filter(|(_, resource)| resource["Type"].as_str() == Some(kind))
        .map(|(name, resource)| (name.as_str().expect("resource names are strings"), resource))
        .collect()
}

fn string(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        other => panic!("expected a scalar, found {other:?}"),
    }
}

/// A key schema as (attribute, HASH|RANGE) pairs, in order.
fn template_keys(schema: &Value) -> Vec<(String, String)> {
    schema
        .as_sequence()
        .expect("KeySchema is a list")
        .iter()
        .map(|key| (string(&key["AttributeName"]), string(&key["KeyType"])))
        .collect()
}

fn sdk_keys(schema: &[aws_sdk_dynamodb::types::KeySchemaElement]) -> Vec<(String, String)> {
    schema
        .iter()
        .map(|key| {
            (
                key.attribute_name().to_owned(),
                key.key_type().as_str().to_owned(),
            )
        })
        .collect()
}

#[test]
fn every_handler_binary_has_a_function_with_the_environment_it_reads() {
    let template = template();
    let functions = resources_of_type(&template, "AWS::Serverless::Function");

    let binaries: BTreeSet<String> = std::fs::read_dir(workspace_root().join("functions/src/bin"))
        .expect("functions/src/bin")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let built: BTreeSet<String> = functions
        .iter()
        .map(|(name, function)| {
            assert_eq!(
                function["Metadata"]["BuildMethod"].as_str(),
                Some("rust-cargolambda"),
                "{name}"
            );
            string(&function["Metadata"]["BuildProperties"]["Binary"])
        })
        .collect();
    assert_eq!(
        built, binaries,
        "functions in template.yaml vs functions/src/bin"
    );

    // Every function shares the Globals environment and adds none of its own.
    let globals: BTreeSet<String> = template["Globals"]["Function"]["Environment"]["Variables"]
        .as_mapping()
        .expect("Globals.Function.Environment.Variables")
        .keys()
        .map(string)
        .collect();
    let read: BTreeSet<String> = Settings::VARIABLES
        .iter()
        .filter(|name| **name != "AWS_REGION") // Lambda sets it; a template may not
        .map(|name| name.to_string())
        .collect();
    assert_eq!(globals, read, "template environment vs Settings::VARIABLES");
    for (name, function) in &functions {
        assert!(
            function["Properties"].get("Environment").is_none(),
            "{name} sets its own Environment; the handlers all read Settings"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gantry_local_creates_what_the_template_creates() {
    let template = template();
    let moto = Moto::start().expect("moto starts");
    let _local =
        GantryLocal::start(std::path::Path::new(BINARY), &moto, &[]).expect("gantry-local starts");
    let config = moto.sdk_config().await;

    // The table: key schema, attributes, indexes and billing.
    let (_, table) = resources_of_type(&template, "AWS::DynamoDB::Table")[0];
    let table = &table["Properties"];
    let described = aws_sdk_dynamodb::Client::new(&config)
        .describe_table()
        .table_name("gantry")
        .send()
        .await
        .expect("gantry-local created the table")
        .table
        .expect("a table description");
    assert_eq!(
        sdk_keys(described.key_schema()),
        template_keys(&table["KeySchema"])
    );
    let attributes: BTreeMap<String, String> = described
        .attribute_definitions()
        .iter()
        .map(|a| {
            (
                a.attribute_name().to_owned(),
                a.attribute_type().as_str().to_owned(),
            )
        })
        .collect();
    let template_attributes: BTreeMap<String, String> = table["AttributeDefinitions"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| (string(&a["AttributeName"]), string(&a["AttributeType"])))
        .collect();
    assert_eq!(attributes, template_attributes);
    let indexes: BTreeMap<String, (Vec<(String, String)>, String)> = described
        .global_secondary_indexes()
        .iter()
        .map(|index| {
            (
                index.index_name().unwrap_or_default().to_owned(),
                (
                    sdk_keys(index.key_schema()),
                    index
                        .projection()
                        .and_then(|p| p.projection_type())
                        .map(|p| p.as_str().to_owned())
                        .unwrap_or_default(),
                ),
            )
        })
        .collect();
    let template_indexes: BTreeMap<String, (Vec<(String, String)>, String)> =
        table["GlobalSecondaryIndexes"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|index| {
                (
                    string(&index["IndexName"]),
                    (
                        template_keys(&index["KeySchema"]),
                        string(&index["Projection"]["ProjectionType"]),
                    ),
                )
            })
            .collect();
    assert_eq!(indexes, template_indexes);
    assert_eq!(
        described
            .billing_mode_summary()
            .and_then(|b| b.billing_mode())
            .map(|b| b.as_str()),
        Some(string(&table["BillingMode"]).as_str())
    );

    // The queues: visibility timeout and redrive to their dead-letter queues.
    let sqs = aws_sdk_sqs::Client::new(&config);
    for (resource, name, dead_letter_resource) in [
        ("ReportsQueue", "gantry-reports", "ReportsDeadLetterQueue"),
        (
            "LifecycleQueue",
            "gantry-lifecycle",
            "LifecycleDeadLetterQueue",
        ),
    ] {
        let queue = &template["Resources"][resource]["Properties"];
        let url = sqs
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .unwrap_or_else(|error| panic!("gantry-local created {name}: {error:?}"))
            .queue_url
            .unwrap();
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .unwrap_or_default();
        use aws_sdk_sqs::types::QueueAttributeName as Q;
        let attribute = |name: Q| attributes.get(&name).cloned().unwrap_or_default();
        assert_eq!(
            attribute(Q::VisibilityTimeout),
            string(&queue["VisibilityTimeout"]),
            "{resource}"
        );
        let redrive: serde_json::Value =
            serde_json::from_str(&attribute(Q::RedrivePolicy)).expect("a redrive policy");
        assert_eq!(
            redrive["maxReceiveCount"].to_string().trim_matches('"'),
            string(&queue["RedrivePolicy"]["maxReceiveCount"]),
            "{resource}"
        );
        assert!(
            redrive["deadLetterTargetArn"]
                .as_str()
                .is_some_and(|arn| arn.ends_with(&format!(":{name}-dlq"))),
            "{redrive}"
        );
        let Value::Tagged(target) = &queue["RedrivePolicy"]["deadLetterTargetArn"] else {
            panic!("{resource}'s redrive target is a !GetAtt");
        };
        assert_eq!(string(&target.value), format!("{dead_letter_resource}.Arn"));
    }

    // The functions fed by queues fit their queue's visibility 6 times (AWS's advice),
    // and report partial batch failures.
    for (function, event, queue) in [
        ("BatchAdvanceFunction", "Reports", "ReportsQueue"),
        ("LifecycleFunction", "Lifecycle", "LifecycleQueue"),
    ] {
        let properties = &template["Resources"][function]["Properties"];
        let timeout: u64 = string(
            properties
                .get("Timeout")
                .unwrap_or(&template["Globals"]["Function"]["Timeout"]),
        )
        .parse()
        .unwrap();
        let visibility: u64 =
            string(&template["Resources"][queue]["Properties"]["VisibilityTimeout"])
                .parse()
                .unwrap();
        assert!(
            visibility >= 6 * timeout,
            "{queue}: {visibility} < 6 x {timeout}"
        );
        let source = &properties["Events"][event]["Properties"];
        assert_eq!(
            source["FunctionResponseTypes"][0].as_str(),
            Some("ReportBatchItemFailures"),
            "{function}"
        );
    }

    // The topic and the bucket exist in both (the lifecycle topic is optional: with it
    // off, as gantry-local runs, hooks notify the queue).
    let unconditional_topics = resources_of_type(&template, "AWS::SNS::Topic")
        .into_iter()
        .filter(|(_, topic)| topic.get("Condition").is_none())
        .count();
    assert_eq!(unconditional_topics, 1);
    assert_eq!(resources_of_type(&template, "AWS::S3::Bucket").len(), 1);
    let topics = aws_sdk_sns::Client::new(&config)
        .list_topics()
        .send()
        .await
        .expect("topics");
    assert!(topics.topics().iter().any(|t| {
        t.topic_arn()
            .is_some_and(|arn| arn.ends_with(":gantry-notifications"))
    }));
}

#[test]
fn an_ec2_host_may_use_only_the_command_queue_tagged_with_its_own_arn() {
    let template = template();
    let statements =
        &template["Resources"]["Ec2HostPolicy"]["Properties"]["PolicyDocument"]["Statement"];
    let own = statements
        .as_sequence()
        .expect("statements")
        .iter()
        .find(|statement| statement["Sid"].as_str() == Some("OwnCommandQueue"))
        .expect("the OwnCommandQueue statement");
    assert_eq!(
        own["Condition"]["StringEquals"]["aws:ResourceTag/gantry:instance-arn"].as_str(),
        Some("${ec2:SourceInstanceARN}"),
        "the queue's tag (gantry_functions::adapters::INSTANCE_ARN_TAG) must be the caller's instance"
    );
    assert_eq!(
        gantry_functions::adapters::INSTANCE_ARN_TAG,
        "gantry:instance-arn"
    );
}

#[test]
fn an_on_premises_host_may_use_only_the_command_queue_tagged_with_its_own_identity() {
    let template = template();
    let statements =
        &template["Resources"]["OnPremisesHostPolicy"]["Properties"]["PolicyDocument"]["Statement"];
    let own = statements
        .as_sequence()
        .expect("statements")
        .iter()
        .find(|statement| statement["Sid"].as_str() == Some("OwnCommandQueue"))
        .expect("the OwnCommandQueue statement");
    let key = format!(
        "aws:ResourceTag/{}",
        gantry_functions::adapters::SENDER_ID_TAG
    );
    assert_eq!(
        own["Condition"]["StringEquals"][key.as_str()].as_str(),
        Some("${aws:userid}"),
        "the queue's tag, written at registration, must be the caller's own identity: {own:?}"
    );
    // Not by name: a role session has no user name, and a user's name proves no
    // registration.
    let resource = format!("{:?}", own["Resource"]);
    assert!(!resource.contains("aws:username"), "{resource}");
}

#[test]
fn lifecycle_hooks_and_their_actions_are_limited_to_groups_tagged_for_gantry() {
    let template = template();
    let key = format!(
        "autoscaling:ResourceTag/{}",
        gantry_functions::adapters::MANAGED_TAG
    );
    for (function, sid) in [
        ("ApiFunction", "LaunchHooks"),
        ("LifecycleFunction", "CompleteLaunches"),
    ] {
        let policies = template["Resources"][function]["Properties"]["Policies"]
            .as_sequence()
            .expect("policies");
        let statement = policies
            .iter()
            .filter_map(|policy| policy["Statement"].as_sequence())
            .flatten()
            .find(|statement| statement["Sid"].as_str() == Some(sid))
            .unwrap_or_else(|| panic!("{function} has {sid}"));
        assert_eq!(
            statement["Condition"]["StringEquals"][key.as_str()].as_str(),
            Some("true"),
            "{function}.{sid}"
        );
    }
}

#[test]
fn functions_that_validate_bundles_have_scratch_space_and_cpu_for_the_largest() {
    use gantry_core::bundle::{Limits, MAX_VALIDATED_ARCHIVE_BYTES, VALIDATING_FUNCTION_MEMORY_MB};
    // The archive and what it unpacks to, both at their limits.
    let needed_mib = (MAX_VALIDATED_ARCHIVE_BYTES + Limits::default().max_bytes) / (1024 * 1024);
    let template = template();
    for function in [
        "PushFunction",
        "CreateDeploymentFunction",
        "ApiFunction",
        "PipelineFunction",
    ] {
        let properties = &template["Resources"][function]["Properties"];
        let size = properties["EphemeralStorage"]["Size"]
            .as_u64()
            .unwrap_or(512);
        assert!(
            size >= needed_mib,
            "{function}: {size} MiB of /tmp, {needed_mib} needed"
        );
        // The limit was measured at this memory (one vCPU).
        assert_eq!(
            properties["MemorySize"].as_u64(),
            Some(VALIDATING_FUNCTION_MEMORY_MB),
            "{function}"
        );
    }
}
