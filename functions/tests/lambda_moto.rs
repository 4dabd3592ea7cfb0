//! The API surface of the AWS Lambda compute platform against a real moto server:
//! Lambda applications, Lambda deployment configurations (predefined and custom), and
//! what Server deployment groups and deployments do with them, with CodeDeploy's
//! exception names.

use gantry_functions::control::{ControlPlane, Settings};
use gantry_functions::error::ApiError;
use gantry_functions::handlers;
use gantry_tests::moto::Moto;
use serde_json::{Value, json};
use std::sync::Arc;

const SERVER_APP: &str = "shop";
const LAMBDA_APP: &str = "orders";

struct Fixture {
    _moto: Moto,
    control: Arc<ControlPlane>,
}

fn settings() -> Settings {
    Settings {
        command_queue_prefix: "cmd-".into(),
        account_id: "123456789012".into(),
        lambda_hook_prefix: None,
        ..Settings::defaults()
    }
}

impl Fixture {
    /// A Server application and a Lambda one.
    async fn start() -> Self {
        let moto = Moto::start().expect("moto");
        let config = moto.sdk_config().await;
        let control = Arc::new(ControlPlane::new(&config, settings()));
        control.store.create_table().await.expect("table");
        let fixture = Self {
            _moto: moto,
            control,
        };
        fixture
            .ok("CreateApplication", json!({"applicationName": SERVER_APP}))
            .await;
        fixture
            .ok(
                "CreateApplication",
                json!({"applicationName": LAMBDA_APP, "computePlatform": "Lambda"}),
            )
            .await;
        fixture
    }

    async fn call(&self, operation: &str, input: Value) -> Result<Value, ApiError> {
        handlers::invoke(
            &self.control,
            "api",
            json!({"operation": operation, "input": input}),
        )
        .await
    }

    async fn ok(&self, operation: &str, input: Value) -> Value {
        match self.call(operation, input.clone()).await {
            Ok(output) => output,
            Err(error) => panic!("{operation} {input}: {error}"),
        }
    }

    /// The refusal of a call that must fail, checked to be `exception` and to name
    /// `field`.
    async fn refused(
        &self,
        operation: &str,
        input: Value,
        exception: &str,
        field: &str,
    ) -> ApiError {
        let error = match self.call(operation, input.clone()).await {
            Ok(output) => panic!("{operation} {input}: accepted, answered {output}"),
            Err(error) => error,
        };
        assert_eq!(error.code, exception, "{operation} {input}: {error}");
        assert!(
            error.message.contains(field),
            "{operation} {input}: {error} does not name {field}"
        );
        error
    }

    async fn config(&self, name: &str) -> Value {
        self.ok("GetDeploymentConfig", json!({"deploymentConfigName": name}))
            .await["deploymentConfigInfo"]
            .clone()
    }
}

#[tokio::test]
async fn lambda_applications_are_created_and_shown_with_their_platform() {
    let fx = Fixture::start().await;
    let got = fx
        .ok("GetApplication", json!({"applicationName": LAMBDA_APP}))
        .await;
    assert_eq!(got["application"]["computePlatform"], "Lambda");
    assert_eq!(got["application"]["applicationName"], LAMBDA_APP);
    let batch = fx
        .ok(
            "BatchGetApplications",
            json!({"applicationNames": [SERVER_APP, LAMBDA_APP]}),
        )
        .await;
    let platforms: Vec<&str> = batch["applicationsInfo"]
        .as_array()
        .unwrap()
        .iter()
        .map(|info| info["computePlatform"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["Server", "Lambda"]);
    let listed = fx.ok("ListApplications", json!({})).await;
    assert_eq!(listed["applications"], json!([LAMBDA_APP, SERVER_APP]));

    // Named explicitly, Server is taken too; ECS and unknown platforms are not.
    fx.ok(
        "CreateApplication",
        json!({"applicationName": "fleet", "computePlatform": "Server"}),
    )
    .await;
    let fleet = fx
        .ok("GetApplication", json!({"applicationName": "fleet"}))
        .await;
    assert_eq!(fleet["application"]["computePlatform"], "Server");
    for platform in ["ECS", "lambda", ""] {
        let refused = fx
            .refused(
                "CreateApplication",
                json!({"applicationName": "containers", "computePlatform": platform}),
                "InvalidComputePlatformException",
                "computePlatform",
            )
            .await;
        assert!(
            refused.message.contains("Server or Lambda"),
            "{platform}: {refused}"
        );
    }
    fx.refused(
        "GetApplication",
        json!({"applicationName": "containers"}),
        "ApplicationDoesNotExistException",
        "applicationName",
    )
    .await;

    // Renamed, it stays a Lambda application.
    fx.ok(
        "UpdateApplication",
        json!({"applicationName": LAMBDA_APP, "newApplicationName": "orders-v2"}),
    )
    .await;
    let renamed = fx
        .ok("GetApplication", json!({"applicationName": "orders-v2"}))
        .await;
    assert_eq!(renamed["application"]["computePlatform"], "Lambda");
}

#[tokio::test]
async fn predefined_lambda_configs_are_shown_listed_and_kept() {
    let fx = Fixture::start().await;
    assert_eq!(
        fx.config("CodeDeployDefault.LambdaCanary10Percent5Minutes")
            .await,
        json!({
            "deploymentConfigName": "CodeDeployDefault.LambdaCanary10Percent5Minutes",
            // A stable id of the name, and CodeDeploy's launch as the create time.
            "deploymentConfigId": "f4330d58-682a-5cc0-bec8-13789f69950c",
            "createTime": 1415750400.0,
            "computePlatform": "Lambda",
            "trafficRoutingConfig": {
                "type": "TimeBasedCanary",
                "timeBasedCanary": {"canaryPercentage": 10, "canaryInterval": 5}
            }
        })
    );
    assert_eq!(
        fx.config("CodeDeployDefault.LambdaLinear10PercentEvery3Minutes")
            .await["trafficRoutingConfig"],
        json!({
            "type": "TimeBasedLinear",
            "timeBasedLinear": {"linearPercentage": 10, "linearInterval": 3}
        })
    );
    assert_eq!(
        fx.config("CodeDeployDefault.LambdaAllAtOnce").await["trafficRoutingConfig"],
        json!({"type": "AllAtOnce"})
    );
    for name in gantry_core::lambda::PREDEFINED_NAMES {
        let info = fx.config(name).await;
        assert_eq!(info["computePlatform"], "Lambda", "{name}");
        assert!(info.get("minimumHealthyHosts").is_none(), "{name}: {info}");
        assert!(info["trafficRoutingConfig"]["type"].is_string(), "{name}");
    }
    // Server configurations show as they did: no trafficRoutingConfig.
    assert_eq!(
        fx.config("CodeDeployDefault.OneAtATime").await,
        json!({
            "deploymentConfigName": "CodeDeployDefault.OneAtATime",
            "deploymentConfigId": "35b6f2e2-d23e-5feb-8b0b-951f02813c34",
            "createTime": 1415750400.0,
            "minimumHealthyHosts": {"type": "MOST_CONCURRENCY", "value": 1},
            "computePlatform": "Server"
        })
    );

    let listed = fx.ok("ListDeploymentConfigs", json!({})).await;
    let names: Vec<&str> = listed["deploymentConfigsList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap())
        .collect();
    for name in gantry_core::lambda::PREDEFINED_NAMES.into_iter().chain([
        "CodeDeployDefault.OneAtATime",
        "CodeDeployDefault.AllAtOnce",
    ]) {
        assert!(names.contains(&name), "{name} in {names:?}");
    }

    for name in [
        "CodeDeployDefault.LambdaAllAtOnce",
        "CodeDeployDefault.LambdaCanary10Percent30Minutes",
    ] {
        fx.refused(
            "DeleteDeploymentConfig",
            json!({"deploymentConfigName": name}),
            "InvalidOperationException",
            "predefined",
        )
        .await;
        fx.config(name).await;
    }
}

#[tokio::test]
async fn custom_lambda_configs_are_created_checked_and_deleted() {
    let fx = Fixture::start().await;
    let routing = json!({
        "type": "TimeBasedLinear",
        "timeBasedLinear": {"linearPercentage": 25, "linearInterval": 3}
    });
    let created = fx
        .ok(
            "CreateDeploymentConfig",
            json!({
                "deploymentConfigName": "Linear25Every3",
                "computePlatform": "Lambda",
                "trafficRoutingConfig": routing,
            }),
        )
        .await;
    let id = created["deploymentConfigId"].as_str().unwrap().to_owned();
    let info = fx.config("Linear25Every3").await;
    assert_eq!(info["deploymentConfigId"], id.as_str());
    assert_eq!(info["computePlatform"], "Lambda");
    assert_eq!(info["trafficRoutingConfig"], routing);
    assert!(info["createTime"].is_f64(), "{info}");
    assert!(info.get("minimumHealthyHosts").is_none(), "{info}");
    fx.ok(
        "CreateDeploymentConfig",
        json!({
            "deploymentConfigName": "Everything",
            "computePlatform": "Lambda",
            "trafficRoutingConfig": {"type": "AllAtOnce"},
        }),
    )
    .await;
    let listed = fx.ok("ListDeploymentConfigs", json!({})).await;
    let names = listed["deploymentConfigsList"].as_array().unwrap();
    assert!(names.contains(&json!("Linear25Every3")), "{listed}");
    assert!(names.contains(&json!("Everything")), "{listed}");

    fx.refused(
        "CreateDeploymentConfig",
        json!({
            "deploymentConfigName": "Linear25Every3",
            "computePlatform": "Lambda",
            "trafficRoutingConfig": {"type": "AllAtOnce"},
        }),
        "DeploymentConfigAlreadyExistsException",
        "deploymentConfigName",
    )
    .await;

    // Each refusal with core's exception, naming the field.
    let lambda = |name: &str, routing: Value| {
        json!({
            "deploymentConfigName": name,
            "computePlatform": "Lambda",
            "trafficRoutingConfig": routing,
        })
    };
    for (input, exception, field) in [
        (
            lambda(
                "Canary0",
                json!({"type": "TimeBasedCanary", "timeBasedCanary": {"canaryPercentage": 0, "canaryInterval": 5}}),
            ),
            "InvalidTrafficRoutingConfigurationException",
            "trafficRoutingConfig.timeBasedCanary.canaryPercentage",
        ),
        (
            lambda(
                "LinearForever",
                json!({"type": "TimeBasedLinear", "timeBasedLinear": {"linearPercentage": 10, "linearInterval": 0}}),
            ),
            "InvalidTrafficRoutingConfigurationException",
            "trafficRoutingConfig.timeBasedLinear.linearInterval",
        ),
        (
            lambda("NoCanary", json!({"type": "TimeBasedCanary"})),
            "InvalidTrafficRoutingConfigurationException",
            "trafficRoutingConfig.timeBasedCanary",
        ),
        (
            lambda("Sideways", json!({"type": "Sideways"})),
            "InvalidTrafficRoutingConfigurationException",
            "trafficRoutingConfig.type",
        ),
        (
            lambda(
                "Negative",
                json!({"type": "TimeBasedCanary", "timeBasedCanary": {"canaryPercentage": -1, "canaryInterval": 5}}),
            ),
            "InvalidTrafficRoutingConfigurationException",
            "trafficRoutingConfig",
        ),
        (
            json!({"deploymentConfigName": "NoRouting", "computePlatform": "Lambda"}),
            "InvalidTrafficRoutingConfigurationException",
            "trafficRoutingConfig",
        ),
        (
            lambda("CodeDeployDefault.Mine", json!({"type": "AllAtOnce"})),
            "InvalidDeploymentConfigNameException",
            "CodeDeployDefault.",
        ),
        (
            json!({
                "deploymentConfigName": "WithHosts",
                "computePlatform": "Lambda",
                "trafficRoutingConfig": {"type": "AllAtOnce"},
                "minimumHealthyHosts": {"type": "HOST_COUNT", "value": 1},
            }),
            "InvalidMinimumHealthyHostValueException",
            "minimumHealthyHosts",
        ),
        (
            json!({
                "deploymentConfigName": "WithZones",
                "computePlatform": "Lambda",
                "trafficRoutingConfig": {"type": "AllAtOnce"},
                "zonalConfig": {"monitorDurationInSeconds": 60},
            }),
            "InvalidZonalDeploymentConfigurationException",
            "zonalConfig",
        ),
        (
            json!({
                "deploymentConfigName": "Containers",
                "computePlatform": "ECS",
                "trafficRoutingConfig": {"type": "AllAtOnce"},
            }),
            "InvalidComputePlatformException",
            "Server or Lambda",
        ),
        // A Server configuration still takes no routing.
        (
            json!({
                "deploymentConfigName": "ServerRouted",
                "minimumHealthyHosts": {"type": "HOST_COUNT", "value": 1},
                "trafficRoutingConfig": {"type": "AllAtOnce"},
            }),
            "InvalidTrafficRoutingConfigurationException",
            "trafficRoutingConfig",
        ),
    ] {
        let name = input["deploymentConfigName"].as_str().unwrap().to_owned();
        fx.refused("CreateDeploymentConfig", input, exception, field)
            .await;
        if !name.starts_with("CodeDeployDefault.") {
            fx.refused(
                "GetDeploymentConfig",
                json!({"deploymentConfigName": name}),
                "DeploymentConfigDoesNotExistException",
                "deploymentConfigName",
            )
            .await;
        }
    }

    fx.ok(
        "DeleteDeploymentConfig",
        json!({"deploymentConfigName": "Linear25Every3"}),
    )
    .await;
    fx.refused(
        "GetDeploymentConfig",
        json!({"deploymentConfigName": "Linear25Every3"}),
        "DeploymentConfigDoesNotExistException",
        "deploymentConfigName",
    )
    .await;
}

#[tokio::test]
async fn server_groups_and_deployments_refuse_lambda_configs() {
    let fx = Fixture::start().await;
    fx.ok(
        "CreateDeploymentConfig",
        json!({
            "deploymentConfigName": "Canary20",
            "computePlatform": "Lambda",
            "trafficRoutingConfig": {"type": "TimeBasedCanary", "timeBasedCanary": {"canaryPercentage": 20, "canaryInterval": 15}},
        }),
    )
    .await;
    let group = |config: &str| {
        json!({
            "applicationName": SERVER_APP,
            "deploymentGroupName": "web",
            "deploymentConfigName": config,
            "onPremisesInstanceTagFilters": [{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}],
        })
    };
    for config in ["Canary20", "CodeDeployDefault.LambdaAllAtOnce"] {
        let refused = fx
            .refused(
                "CreateDeploymentGroup",
                group(config),
                "InvalidDeploymentConfigNameException",
                "deploymentConfigName",
            )
            .await;
        assert!(
            refused.message.contains("Lambda") && refused.message.contains("Server"),
            "{refused}"
        );
    }
    fx.ok(
        "CreateDeploymentGroup",
        group("CodeDeployDefault.AllAtOnce"),
    )
    .await;
    fx.refused(
        "UpdateDeploymentGroup",
        json!({
            "applicationName": SERVER_APP,
            "currentDeploymentGroupName": "web",
            "deploymentConfigName": "Canary20",
        }),
        "InvalidDeploymentConfigNameException",
        "deploymentConfigName",
    )
    .await;
    // A deployment's own configuration is checked the same way.
    let refused = handlers::invoke(
        &fx.control,
        "create-deployment",
        json!({
            "applicationName": SERVER_APP,
            "deploymentGroupName": "web",
            "deploymentConfigName": "CodeDeployDefault.LambdaCanary10Percent5Minutes",
            "revision": {"revisionType": "S3", "s3Location": {"bucket": "revisions", "key": "app.tgz", "bundleType": "tgz"}},
        }),
    )
    .await
    .expect_err("a Lambda configuration for a Server deployment");
    assert_eq!(
        refused.code, "InvalidDeploymentConfigNameException",
        "{refused}"
    );
    // The group keeps its Server configuration.
    let got = fx
        .ok(
            "GetDeploymentGroup",
            json!({"applicationName": SERVER_APP, "deploymentGroupName": "web"}),
        )
        .await;
    assert_eq!(
        got["deploymentGroupInfo"]["deploymentConfigName"],
        "CodeDeployDefault.AllAtOnce"
    );
}

/// A Lambda application's group: CodeDeploy's only style for Lambda
/// (BLUE_GREEN with WITH_TRAFFIC_CONTROL) whether given or not, a Lambda configuration
/// (LambdaAllAtOnce unless named), and nothing about instances.
#[tokio::test]
async fn lambda_deployment_groups_take_lambda_settings_and_refuse_instance_ones() {
    let fx = Fixture::start().await;
    let group = |extra: Value| {
        let mut input = json!({"applicationName": LAMBDA_APP, "deploymentGroupName": "live"});
        input
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        input
    };
    for (extra, exception, field) in [
        (
            json!({"onPremisesInstanceTagFilters": [{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}]}),
            "InvalidInputException",
            "onPremisesInstanceTagFilters",
        ),
        (
            json!({"autoScalingGroups": ["web"]}),
            "InvalidInputException",
            "autoScalingGroups",
        ),
        (
            json!({"deploymentStyle": {"deploymentType": "IN_PLACE", "deploymentOption": "WITHOUT_TRAFFIC_CONTROL"}}),
            "InvalidDeploymentStyleException",
            "deploymentStyle",
        ),
        (
            json!({"deploymentConfigName": "CodeDeployDefault.AllAtOnce"}),
            "InvalidDeploymentConfigNameException",
            "deploymentConfigName",
        ),
    ] {
        fx.refused("CreateDeploymentGroup", group(extra), exception, field)
            .await;
    }
    let listed = fx
        .ok(
            "ListDeploymentGroups",
            json!({"applicationName": LAMBDA_APP}),
        )
        .await;
    assert_eq!(
        listed["deploymentGroups"],
        json!([]),
        "nothing refused was kept"
    );

    fx.ok("CreateDeploymentGroup", group(json!({}))).await;
    let got = fx
        .ok(
            "GetDeploymentGroup",
            json!({"applicationName": LAMBDA_APP, "deploymentGroupName": "live"}),
        )
        .await;
    let info = &got["deploymentGroupInfo"];
    assert_eq!(info["computePlatform"], "Lambda");
    assert_eq!(
        info["deploymentConfigName"],
        "CodeDeployDefault.LambdaAllAtOnce"
    );
    assert_eq!(
        info["deploymentStyle"],
        json!({"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"})
    );
    fx.ok(
        "UpdateDeploymentGroup",
        json!({
            "applicationName": LAMBDA_APP,
            "currentDeploymentGroupName": "live",
            "deploymentConfigName": "CodeDeployDefault.LambdaLinear10PercentEvery1Minute",
        }),
    )
    .await;
    fx.refused(
        "UpdateDeploymentGroup",
        json!({
            "applicationName": LAMBDA_APP,
            "currentDeploymentGroupName": "live",
            "ec2TagFilters": [{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}],
        }),
        "InvalidInputException",
        "ec2TagFilters",
    )
    .await;
    let got = fx
        .ok(
            "GetDeploymentGroup",
            json!({"applicationName": LAMBDA_APP, "deploymentGroupName": "live"}),
        )
        .await;
    assert_eq!(
        got["deploymentGroupInfo"]["deploymentConfigName"],
        "CodeDeployDefault.LambdaLinear10PercentEvery1Minute"
    );
}
