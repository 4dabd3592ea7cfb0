//! Lambda deployments when things go wrong outside them: an alias effect run late from
//! the outbox, an alias deleted mid-shift, alarms that cannot be read, and AppSpecs
//! naming other accounts' functions.

use super::{MINUTE, fixture};
use aws_sdk_dynamodb::types::AttributeValue;
use gantry_core::lambda::Effect;
use gantry_functions::lambda_deployments::{self, LambdaSpec};
use gantry_functions::store::{LambdaOutboxEntry, keys};
use serde_json::json;

/// A SetWeight left in the outbox from before a stop, run late by the tick, does not
/// shift traffic back: alias effects make the alias what the deployment says now.
#[tokio::test(flavor = "multi_thread")]
async fn a_stale_weight_run_late_from_the_outbox_leaves_a_stopped_alias_alone() {
    let fx = fixture().await;
    let id = fx
        .deploy(
            &fx.appspec(None, None),
            Some("CodeDeployDefault.LambdaCanary10Percent5Minutes"),
        )
        .await
        .unwrap();
    assert_eq!(fx.alias().await, (fx.current.clone(), 0.1));
    fx.ok("StopDeployment", json!({"deploymentId": id})).await;
    assert_eq!(fx.alias().await, (fx.current.clone(), 0.0));
    // As if the first step's UpdateAlias had been throttled and kept for the tick.
    let stale = LambdaOutboxEntry {
        effects: vec![Effect::SetWeight { percent: 10 }],
        at: 0,
        attempts: 0,
    };
    aws_sdk_dynamodb::Client::new(&fx.stand.moto.sdk_config().await)
        .put_item()
        .table_name(&fx.control.settings.table)
        .item("pk", AttributeValue::S(keys::deployment(&id)))
        .item(
            "sk",
            AttributeValue::S(keys::outbox("00000000000000000000")),
        )
        .item(
            "entry",
            AttributeValue::S(serde_json::to_string(&stale).unwrap()),
        )
        .send()
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    lambda_deployments::tick(&fx.control, now + 3_600_000)
        .await
        .unwrap();
    assert_eq!(fx.alias().await, (fx.current.clone(), 0.0));
    let record = fx
        .control
        .store
        .load_lambda_deployment::<LambdaSpec>(&id)
        .await
        .unwrap();
    assert!(record.outbox.is_empty(), "{:?}", record.outbox);
}

/// An alias deleted mid-shift cannot be moved: the deployment fails with
/// INVALID_LAMBDA_FUNCTION rather than "succeeding" with the traffic where it was, and
/// the group is free.
#[tokio::test(flavor = "multi_thread")]
async fn an_alias_deleted_mid_shift_fails_the_deployment() {
    let fx = fixture().await;
    let id = fx.deploy(&fx.appspec(None, None), None).await.unwrap();
    let start = fx.shifting_start(&id).await;
    fx.stand
        .lambda
        .delete_alias()
        .function_name("shop")
        .name("live")
        .send()
        .await
        .unwrap();
    lambda_deployments::tick(&fx.control, start + MINUTE)
        .await
        .unwrap();
    let info = fx.info(&id).await;
    assert_eq!(info["status"], "Failed", "{info}");
    assert_eq!(info["errorInformation"]["code"], "INVALID_LAMBDA_FUNCTION");
    assert!(
        info["failedEffects"]
            .as_array()
            .is_some_and(|failed| !failed.is_empty()),
        "{info}"
    );
    let listed = fx
        .ok(
            "ListDeployments",
            json!({"applicationName": "shop", "includeOnlyStatuses": ["InProgress"]}),
        )
        .await;
    assert_eq!(listed["deployments"], json!([]));
}

/// Alarms that cannot be read stop a deployment (CodeDeploy's default), unless the group
/// ignores that (`ignorePollAlarmFailure`).
#[tokio::test(flavor = "multi_thread")]
async fn unreadable_alarms_stop_a_deployment_unless_the_group_ignores_them() {
    let fx = fixture().await;
    for (ignore, expected) in [(true, "InProgress"), (false, "Stopped")] {
        fx.ok(
            "UpdateDeploymentGroup",
            json!({
                "applicationName": "shop", "currentDeploymentGroupName": "live",
                "alarmConfiguration": {"enabled": true, "ignorePollAlarmFailure": ignore, "alarms": [{"name": "not-an-alarm"}]},
            }),
        )
        .await;
        let id = fx.deploy(&fx.appspec(None, None), None).await.unwrap();
        let start = fx.shifting_start(&id).await;
        // Before the next step: only the alarms are looked at.
        lambda_deployments::tick_one(&fx.control, &id, start + MINUTE / 2)
            .await
            .unwrap();
        let info = fx.info(&id).await;
        assert_eq!(info["status"], expected, "ignore {ignore}: {info}");
        if ignore {
            fx.ok("StopDeployment", json!({"deploymentId": id})).await;
        } else {
            assert_eq!(info["errorInformation"]["code"], "ALARM_ACTIVE");
            assert!(
                info["errorInformation"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("not-an-alarm"),
                "{info}"
            );
        }
        assert_eq!(fx.alias().await, (fx.current.clone(), 0.0));
    }
}

/// A function or hook named by another account's or Region's ARN is refused: Gantry
/// moves and invokes only its own account's functions.
#[tokio::test(flavor = "multi_thread")]
async fn functions_of_other_accounts_are_refused() {
    let fx = fixture().await;
    let account = fx.control.settings.account_id.clone();
    let good = fx.appspec(Some("CodeDeployHook_before"), None);
    for (appspec, says) in [
        (
            good.replace(
                "CodeDeployHook_before",
                "arn:aws:lambda:us-east-1:999999999999:function:CodeDeployHook_before",
            ),
            "999999999999",
        ),
        (
            good.replace(
                "CodeDeployHook_before",
                &format!("arn:aws:lambda:eu-west-1:{account}:function:CodeDeployHook_before"),
            ),
            "eu-west-1",
        ),
        (
            good.replace(
                "Name: shop",
                "Name: arn:aws:lambda:us-east-1:999999999999:function:shop",
            ),
            "999999999999",
        ),
    ] {
        let error = fx.deploy(&appspec, None).await.unwrap_err();
        assert_eq!(error.code.name(), "InvalidRevisionException", "{error}");
        assert!(error.message.contains(says), "{appspec}: {error}");
    }
}

/// Two groups naming one alias: the second deployment is refused while the first moves
/// it (as one group's second deployment is), and taken once the first has ended.
#[tokio::test(flavor = "multi_thread")]
async fn two_groups_never_move_one_alias_at_once() {
    let fx = fixture().await;
    fx.ok(
        "CreateDeploymentGroup",
        json!({"applicationName": "shop", "deploymentGroupName": "canary"}),
    )
    .await;
    let appspec = fx.appspec(Some("CodeDeployHook_before"), None);
    let first = fx.deploy(&appspec, None).await.unwrap();
    let second = fx
        .call(
            "CreateDeployment",
            json!({
                "applicationName": "shop", "deploymentGroupName": "canary",
                "revision": {"revisionType": "AppSpecContent", "appSpecContent": {"content": appspec}},
            }),
        )
        .await
        .unwrap_err();
    assert_eq!(
        second.code.name(),
        "DeploymentLimitExceededException",
        "{second}"
    );
    assert!(second.message.contains("shop:live"), "{second}");
    fx.ok("StopDeployment", json!({"deploymentId": first}))
        .await;
    fx.ok(
        "CreateDeployment",
        json!({
            "applicationName": "shop", "deploymentGroupName": "canary",
            "revision": {"revisionType": "AppSpecContent", "appSpecContent": {"content": appspec}},
        }),
    )
    .await;
}
