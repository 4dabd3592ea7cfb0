//! Read commands over CodeDeploy's newer read operations: a deployment's targets by
//! status (ListDeploymentTargets), one target (GetDeploymentTarget), and an
//! application's revisions with what was registered about them
//! (ListApplicationRevisions, BatchGetApplicationRevisions).

use crate::client::Gantry;
use crate::output::{Output, show};
use gantry_api::model::serialized_name;
use gantry_api::revision::{
    BatchGetApplicationRevisionsOutput, ListApplicationRevisionsOutput, RevisionInfo,
};
use gantry_api::target::{GetDeploymentTargetOutput, InstanceTarget, ListDeploymentTargetsOutput};
use gantry_core::wire::RevisionLocation;
use serde_json::json;

/// `gantry targets`: a deployment's target ids, those with one of `statuses` if given.
pub async fn targets(
    gantry: &Gantry,
    deployment_id: &str,
    statuses: &[String],
    output: Output,
) -> anyhow::Result<()> {
    let mut input = json!({"deploymentId": deployment_id});
    if !statuses.is_empty() {
        input["targetFilters"] = json!({"TargetStatus": statuses});
    }
    let listed: ListDeploymentTargetsOutput =
        gantry.list_all("ListDeploymentTargets", input).await?;
    show(output, &listed, |v| v.target_ids.join("\n"));
    Ok(())
}

/// `gantry target`: one target, its status and each event's.
pub async fn target(
    gantry: &Gantry,
    deployment_id: &str,
    target_id: &str,
    output: Output,
) -> anyhow::Result<()> {
    let (got, typed): (_, GetDeploymentTargetOutput) = gantry
        .call(
            "GetDeploymentTarget",
            json!({"deploymentId": deployment_id, "targetId": target_id}),
        )
        .await?;
    show(output, &got, |_| {
        match &typed.deployment_target.instance_target {
            Some(instance) => target_text(instance),
            None => serde_json::to_string_pretty(&got).unwrap_or_default(),
        }
    });
    Ok(())
}

fn target_text(target: &InstanceTarget) -> String {
    let mut text = format!("{} {}", target.target_id, serialized_name(&target.status));
    for event in &target.lifecycle_events {
        text.push_str(&format!(
            "\n  {} {}",
            event.lifecycle_event_name,
            serialized_name(&event.status)
        ));
        if let Some(diagnostics) = event.diagnostics.as_ref().filter(|d| !d.message.is_empty()) {
            text.push_str(&format!(": {}", diagnostics.message));
        }
    }
    text
}

/// `gantry revisions`: an application's registered revisions, newest first, with when
/// each was registered and its description.
pub async fn revisions(gantry: &Gantry, application: &str, output: Output) -> anyhow::Result<()> {
    let listed: ListApplicationRevisionsOutput = gantry
        .list_all(
            "ListApplicationRevisions",
            json!({"applicationName": application}),
        )
        .await?;
    let locations = listed.revisions;
    let mut revisions: Vec<RevisionInfo> = Vec::with_capacity(locations.len());
    // BatchGetApplicationRevisions takes 25 at a time, as CodeDeploy's does.
    for chunk in locations.chunks(25) {
        let (_, got): (_, BatchGetApplicationRevisionsOutput) = gantry
            .call(
                "BatchGetApplicationRevisions",
                json!({"applicationName": application, "revisions": chunk}),
            )
            .await?;
        revisions.extend(got.revisions);
    }
    let text = revisions
        .iter()
        .map(revision_text)
        .collect::<Vec<_>>()
        .join("\n");
    let all = json!({"applicationName": application, "revisions": revisions});
    show(output, &all, |_| text);
    Ok(())
}

/// Where a revision is, as `gantry deploy --revision` takes it.
pub fn revision_place(location: &RevisionLocation) -> String {
    match location {
        RevisionLocation::S3 { s3_location } => {
            format!("s3://{}/{}", s3_location.bucket, s3_location.key)
        }
        RevisionLocation::GitHub { git_hub_location } => format!(
            "github:{}@{}",
            git_hub_location.repository, git_hub_location.commit_id
        ),
    }
}

fn revision_text(revision: &RevisionInfo) -> String {
    let place = revision_place(&revision.revision_location);
    let info = &revision.generic_revision_info;
    let mut text = format!("{place} registered {}", info.register_time);
    if let Some(description) = &info.description {
        text.push_str(&format!(": {description}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_shows_each_event_and_why_it_failed() {
        let target = serde_json::from_value(json!({
            "deploymentId": "d-1", "targetId": "i-0abc", "status": "Failed",
            "targetArn": "arn:aws:codedeploy:us-east-1:1:instance/i-0abc",
            "lastUpdatedAt": 1.0, "instanceLabel": "Blue",
            "lifecycleEvents": [
                {"lifecycleEventName": "ApplicationStop", "status": "Failed",
                 "startTime": 1.0, "endTime": 1.0,
                 "diagnostics": {"errorCode": "UnknownError", "message": "instance i-0abc is stopped"}},
                {"lifecycleEventName": "DownloadBundle", "status": "Skipped",
                 "startTime": null, "endTime": null},
            ],
        }))
        .unwrap();
        assert_eq!(
            target_text(&target),
            "i-0abc Failed\n  ApplicationStop Failed: instance i-0abc is stopped\n  DownloadBundle Skipped"
        );
    }

    #[test]
    fn a_revision_shows_where_it_is_and_when_it_was_registered() {
        let revision = serde_json::from_value(json!({
            "revisionLocation": {"revisionType": "S3", "s3Location": {"bucket": "b", "key": "app/v1.tgz", "bundleType": "tgz"}},
            "genericRevisionInfo": {"registerTime": 1700000000.5, "description": "first"},
        }))
        .unwrap();
        assert_eq!(
            revision_text(&revision),
            "s3://b/app/v1.tgz registered 1700000000.5: first"
        );
    }
}
