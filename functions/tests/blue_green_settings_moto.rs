//! Deployment groups' blue/green settings through the API handler against a real moto
//! server: `deploymentStyle` BLUE_GREEN and `blueGreenDeploymentConfiguration` as
//! CreateDeploymentGroup and UpdateDeploymentGroup take them (CodeDeploy's defaults for
//! what is left out) and GetDeploymentGroup and BatchGetDeploymentGroups return them.

use gantry_functions::control::{ControlPlane, Settings};
use gantry_functions::error::ApiError;
use gantry_functions::handlers;
use gantry_tests::moto::Moto;
use serde_json::{Value, json};

const APP: &str = "shop";
const LIFECYCLE_QUEUE: &str = "gantry-lifecycle";

struct Fixture {
    moto: Moto,
    control: ControlPlane,
}

fn settings(lifecycle_queue_url: Option<String>) -> Settings {
    Settings {
        command_queue_prefix: "cmd-".into(),
        account_id: "123456789012".into(),
        lifecycle_queue_url,
        lifecycle_queue_arn: Some(format!(
            "arn:aws:sqs:us-east-1:123456789012:{LIFECYCLE_QUEUE}"
        )),
        lifecycle_role_arn: Some("arn:aws:iam::123456789012:role/gantry-lifecycle".into()),
        lambda_hook_prefix: None,
        ..Settings::defaults()
    }
}

impl Fixture {
    async fn start() -> Self {
        let moto = Moto::start().expect("moto");
        let config = moto.sdk_config().await;
        let queue = aws_sdk_sqs::Client::new(&config)
            .create_queue()
            .queue_name(LIFECYCLE_QUEUE)
            .send()
            .await
            .expect("lifecycle queue")
            .queue_url;
        let control = ControlPlane::new(&config, settings(queue));
        control.store.create_table().await.expect("table");
        let fixture = Self { moto, control };
        fixture
            .ok("CreateApplication", json!({"applicationName": APP}))
            .await;
        fixture
    }

    async fn call(&self, operation: &str, input: Value) -> Result<Value, ApiError> {
        call(&self.control, operation, input).await
    }

    async fn ok(&self, operation: &str, input: Value) -> Value {
        match self.call(operation, input.clone()).await {
            Ok(output) => output,
            Err(error) => panic!("{operation} {input}: {error}"),
        }
    }

    /// GetDeploymentGroup's `deploymentGroupInfo`.
    async fn info(&self, group: &str) -> Value {
        self.ok(
            "GetDeploymentGroup",
            json!({"applicationName": APP, "deploymentGroupName": group}),
        )
        .await["deploymentGroupInfo"]
            .take()
    }
}

async fn call(control: &ControlPlane, operation: &str, input: Value) -> Result<Value, ApiError> {
    handlers::invoke(
        control,
        "api",
        json!({"operation": operation, "input": input}),
    )
    .await
}

/// CreateDeploymentGroup's input for a blue/green group of EC2 instances tagged
/// role=web behind the target group `web`, with `extra` over it (a null removes a field).
fn blue_green_group(name: &str, extra: Value) -> Value {
    let mut input = json!({
        "applicationName": APP,
        "deploymentGroupName": name,
        "ec2TagFilters": [{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}],
        "deploymentStyle": {"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
        "loadBalancerInfo": {"targetGroupInfoList": [{"name": "web"}]},
    });
    let fields = input.as_object_mut().unwrap();
    for (key, value) in extra.as_object().unwrap() {
        if value.is_null() {
            fields.remove(key);
        } else {
            fields.insert(key.clone(), value.clone());
        }
    }
    input
}

/// CodeDeploy's defaults, as GetDeploymentGroup shows them.
fn defaults() -> Value {
    json!({
        "terminateBlueInstancesOnDeploymentSuccess": {"action": "TERMINATE", "terminationWaitTimeInMinutes": 60},
        "deploymentReadyOption": {"actionOnTimeout": "CONTINUE_DEPLOYMENT", "waitTimeInMinutes": 0},
        "greenFleetProvisioningOption": {"action": "DISCOVER_EXISTING"},
    })
}

/// A managed Auto Scaling group `web-asg` of one instance, for COPY_AUTO_SCALING_GROUP.
async fn auto_scaling_group(moto: &Moto) {
    let config = moto.sdk_config().await;
    let image = aws_sdk_ec2::Client::new(&config)
        .describe_images()
        .send()
        .await
        .unwrap()
        .images()[0]
        .image_id()
        .unwrap()
        .to_owned();
    let autoscaling = aws_sdk_autoscaling::Client::new(&config);
    autoscaling
        .create_launch_configuration()
        .launch_configuration_name("web")
        .image_id(&image)
        .instance_type("t3.micro")
        .send()
        .await
        .unwrap();
    autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name("web-asg")
        .launch_configuration_name("web")
        .min_size(1)
        .max_size(2)
        .desired_capacity(1)
        .availability_zones("us-east-1a")
        .send()
        .await
        .unwrap();
    autoscaling
        .create_or_update_tags()
        .tags(
            aws_sdk_autoscaling::types::Tag::builder()
                .resource_id("web-asg")
                .resource_type("auto-scaling-group")
                .key("gantry:managed")
                .value("true")
                .propagate_at_launch(false)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blue_green_group_gets_codedeploys_defaults_and_get_returns_them() {
    let fx = Fixture::start().await;
    fx.ok("CreateDeploymentGroup", blue_green_group("bg", json!({})))
        .await;
    let info = fx.info("bg").await;
    assert_eq!(
        info["deploymentStyle"],
        json!({"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"})
    );
    assert_eq!(
        info["blueGreenDeploymentConfiguration"],
        defaults(),
        "{info}"
    );
    assert_eq!(
        info["loadBalancerInfo"],
        json!({"targetGroupInfoList": [{"name": "web"}]})
    );
    let batch = fx
        .ok(
            "BatchGetDeploymentGroups",
            json!({"applicationName": APP, "deploymentGroupNames": ["bg"]}),
        )
        .await;
    assert_eq!(
        batch["deploymentGroupsInfo"][0]["blueGreenDeploymentConfiguration"],
        defaults()
    );

    // A part given alone: the others are CodeDeploy's defaults, and so are the fields
    // the part leaves out or leaves blank (a CLI skeleton's "").
    fx.ok(
        "CreateDeploymentGroup",
        blue_green_group(
            "partial",
            json!({"blueGreenDeploymentConfiguration": {
                "deploymentReadyOption": {"actionOnTimeout": "STOP_DEPLOYMENT", "waitTimeInMinutes": 30},
                "terminateBlueInstancesOnDeploymentSuccess": {"action": ""},
            }}),
        ),
    )
    .await;
    let mut expected = defaults();
    expected["deploymentReadyOption"] =
        json!({"actionOnTimeout": "STOP_DEPLOYMENT", "waitTimeInMinutes": 30});
    assert_eq!(
        fx.info("partial").await["blueGreenDeploymentConfiguration"],
        expected
    );

    // In place, a group has no configuration unless it is given one, which it keeps,
    // unused, as CodeDeploy does.
    let in_place = json!({
        "deploymentStyle": {"deploymentType": "IN_PLACE", "deploymentOption": "WITHOUT_TRAFFIC_CONTROL"},
        "loadBalancerInfo": null,
    });
    fx.ok(
        "CreateDeploymentGroup",
        blue_green_group("plain", in_place.clone()),
    )
    .await;
    let info = fx.info("plain").await;
    assert!(
        info.get("blueGreenDeploymentConfiguration").is_none(),
        "{info}"
    );
    let mut kept = in_place.clone();
    kept["blueGreenDeploymentConfiguration"] =
        json!({"terminateBlueInstancesOnDeploymentSuccess": {"action": "KEEP_ALIVE"}});
    fx.ok("CreateDeploymentGroup", blue_green_group("kept", kept))
        .await;
    let mut expected = defaults();
    expected["terminateBlueInstancesOnDeploymentSuccess"] =
        json!({"action": "KEEP_ALIVE", "terminationWaitTimeInMinutes": 60});
    let info = fx.info("kept").await;
    assert_eq!(info["deploymentStyle"]["deploymentType"], "IN_PLACE");
    assert_eq!(info["blueGreenDeploymentConfiguration"], expected, "{info}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_configuration_round_trips_and_updates_keep_what_they_leave_out() {
    let fx = Fixture::start().await;
    auto_scaling_group(&fx.moto).await;
    let full = json!({
        "terminateBlueInstancesOnDeploymentSuccess": {"action": "KEEP_ALIVE", "terminationWaitTimeInMinutes": 5},
        "deploymentReadyOption": {"actionOnTimeout": "STOP_DEPLOYMENT", "waitTimeInMinutes": 2880},
        "greenFleetProvisioningOption": {"action": "COPY_AUTO_SCALING_GROUP"},
    });
    fx.ok(
        "CreateDeploymentGroup",
        blue_green_group(
            "bg",
            json!({
                "ec2TagFilters": null,
                "autoScalingGroups": ["web-asg"],
                "blueGreenDeploymentConfiguration": full,
            }),
        ),
    )
    .await;
    let info = fx.info("bg").await;
    assert_eq!(info["blueGreenDeploymentConfiguration"], full, "{info}");
    assert_eq!(info["autoScalingGroups"], json!([{"name": "web-asg"}]));

    // Left out, the configuration stays.
    let update = |extra: Value| {
        let mut input = json!({"applicationName": APP, "currentDeploymentGroupName": "bg"});
        input
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        fx.call("UpdateDeploymentGroup", input)
    };
    update(json!({"deploymentConfigName": "CodeDeployDefault.AllAtOnce"}))
        .await
        .unwrap();
    let info = fx.info("bg").await;
    assert_eq!(info["deploymentConfigName"], "CodeDeployDefault.AllAtOnce");
    assert_eq!(info["blueGreenDeploymentConfiguration"], full);

    // A part given replaces the group's; the parts left out stay.
    update(json!({"blueGreenDeploymentConfiguration": {
        "deploymentReadyOption": {"actionOnTimeout": "CONTINUE_DEPLOYMENT"},
    }}))
    .await
    .unwrap();
    let mut expected = full.clone();
    expected["deploymentReadyOption"] =
        json!({"actionOnTimeout": "CONTINUE_DEPLOYMENT", "waitTimeInMinutes": 0});
    assert_eq!(
        fx.info("bg").await["blueGreenDeploymentConfiguration"],
        expected
    );

    // COPY_AUTO_SCALING_GROUP keeps needing the one Auto Scaling group it copies.
    let error = update(json!({"autoScalingGroups": []})).await.unwrap_err();
    assert_eq!(
        error.code.name(),
        "InvalidBlueGreenDeploymentConfigurationException"
    );
    assert!(
        error.message.contains("greenFleetProvisioningOption")
            && error.message.contains("autoScalingGroups"),
        "{error}"
    );
    assert_eq!(
        fx.info("bg").await["blueGreenDeploymentConfiguration"],
        expected
    );

    // Back to in-place: the configuration is kept, unused.
    update(json!({
        "deploymentStyle": {"deploymentType": "IN_PLACE", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
    }))
    .await
    .unwrap();
    let info = fx.info("bg").await;
    assert_eq!(info["deploymentStyle"]["deploymentType"], "IN_PLACE");
    assert_eq!(info["blueGreenDeploymentConfiguration"], expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_name_the_field_with_codedeploys_exception() {
    let fx = Fixture::start().await;
    let style = "InvalidDeploymentStyleException";
    let balancer = "InvalidLoadBalancerInfoException";
    let config = "InvalidBlueGreenDeploymentConfigurationException";
    let bg = |value: Value| json!({"blueGreenDeploymentConfiguration": value});
    let cases = [
        (
            json!({"deploymentStyle": {"deploymentType": "PURPLE", "deploymentOption": "WITH_TRAFFIC_CONTROL"}}),
            style,
            vec!["deploymentStyle.deploymentType", "IN_PLACE", "BLUE_GREEN"],
        ),
        (
            json!({"deploymentStyle": {"deploymentType": "BLUE_GREEN", "deploymentOption": "WITHOUT_TRAFFIC_CONTROL"}}),
            style,
            vec!["deploymentStyle.deploymentOption", "WITH_TRAFFIC_CONTROL"],
        ),
        (
            json!({"loadBalancerInfo": null}),
            balancer,
            vec!["loadBalancerInfo.targetGroupInfoList", "BLUE_GREEN"],
        ),
        (
            json!({
                "ec2TagFilters": null,
                "onPremisesInstanceTagFilters": [{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}],
            }),
            style,
            vec!["onPremisesInstanceTagFilters", "EC2", "on-premises"],
        ),
        (
            json!({"onPremisesTagSet": {"onPremisesTagSetList": [[{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}]]}}),
            style,
            vec!["onPremisesTagSet", "EC2"],
        ),
        (
            bg(json!({"terminateBlueInstancesOnDeploymentSuccess": {"action": "EXPLODE"}})),
            config,
            vec![
                "blueGreenDeploymentConfiguration.terminateBlueInstancesOnDeploymentSuccess.action",
                "TERMINATE or KEEP_ALIVE",
            ],
        ),
        (
            bg(
                json!({"terminateBlueInstancesOnDeploymentSuccess": {"terminationWaitTimeInMinutes": 2881}}),
            ),
            config,
            vec![
                "terminateBlueInstancesOnDeploymentSuccess.terminationWaitTimeInMinutes",
                "0 to 2880",
            ],
        ),
        (
            bg(
                json!({"terminateBlueInstancesOnDeploymentSuccess": {"terminationWaitTimeInMinutes": "sixty"}}),
            ),
            config,
            vec!["terminateBlueInstancesOnDeploymentSuccess.terminationWaitTimeInMinutes"],
        ),
        (
            bg(json!({"deploymentReadyOption": {"actionOnTimeout": "LATER"}})),
            config,
            vec![
                "deploymentReadyOption.actionOnTimeout",
                "CONTINUE_DEPLOYMENT or STOP_DEPLOYMENT",
            ],
        ),
        (
            bg(
                json!({"deploymentReadyOption": {"actionOnTimeout": "STOP_DEPLOYMENT", "waitTimeInMinutes": -1}}),
            ),
            config,
            vec!["deploymentReadyOption.waitTimeInMinutes", "0 to 2880"],
        ),
        (
            bg(json!({"greenFleetProvisioningOption": {"action": "BORROW"}})),
            config,
            vec![
                "greenFleetProvisioningOption.action",
                "DISCOVER_EXISTING or COPY_AUTO_SCALING_GROUP",
            ],
        ),
        (
            bg(json!({"greenFleetProvisioningOption": {"action": "DISCOVER_EXISTING", "size": 3}})),
            config,
            vec!["greenFleetProvisioningOption", "size"],
        ),
        (
            bg(json!({"greenFleetProvisioningOption": {"action": "COPY_AUTO_SCALING_GROUP"}})),
            config,
            vec![
                "greenFleetProvisioningOption",
                "autoScalingGroups",
                "names 0",
            ],
        ),
        (
            json!({
                "autoScalingGroups": ["web-a", "web-b"],
                "blueGreenDeploymentConfiguration": {"greenFleetProvisioningOption": {"action": "COPY_AUTO_SCALING_GROUP"}},
            }),
            config,
            vec![
                "greenFleetProvisioningOption",
                "autoScalingGroups",
                "names 2",
            ],
        ),
    ];
    for (extra, exception, needles) in cases {
        let input = blue_green_group("g", extra.clone());
        let error = fx.call("CreateDeploymentGroup", input).await.unwrap_err();
        assert_eq!(error.code.name(), exception, "{extra}: {error}");
        for needle in needles {
            assert!(
                error.message.contains(needle),
                "{extra}: {error} lacks {needle:?}"
            );
        }
    }
    // An in-place group may not turn blue/green while it selects on-premises instances.
    fx.ok(
        "CreateDeploymentGroup",
        json!({
            "applicationName": APP,
            "deploymentGroupName": "onprem",
            "onPremisesInstanceTagFilters": [{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}],
        }),
    )
    .await;
    let error = fx
        .call(
            "UpdateDeploymentGroup",
            json!({
                "applicationName": APP,
                "currentDeploymentGroupName": "onprem",
                "deploymentStyle": {"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
                "loadBalancerInfo": {"targetGroupInfoList": [{"name": "web"}]},
            }),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code.name(), style);
    assert!(
        error.message.contains("onPremisesInstanceTagFilters"),
        "{error}"
    );
    let info = fx.info("onprem").await;
    assert_eq!(info["deploymentStyle"]["deploymentType"], "IN_PLACE");

    // Blue/green moves traffic with the lifecycle queue's checks of target health.
    let config = fx.moto.sdk_config().await;
    let bare = ControlPlane::new(&config, settings(None));
    let error = call(
        &bare,
        "CreateDeploymentGroup",
        blue_green_group("g", json!({})),
    )
    .await
    .unwrap_err();
    assert!(
        error.message.contains("GANTRY_LIFECYCLE_QUEUE_URL"),
        "{error}"
    );

    // Nothing refused was created.
    let groups = fx
        .ok("ListDeploymentGroups", json!({"applicationName": APP}))
        .await;
    assert_eq!(groups["deploymentGroups"], json!(["onprem"]));
}
