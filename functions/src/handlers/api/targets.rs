//! A deployment's targets as ListDeploymentTargets and ListDeploymentInstances list them:
//! filters by status and label, a page at a time.

use super::paging::{PAGE_SIZE, encode_token, page, page_start};
use super::render::{instance_label, shown_status};
use crate::control::ControlPlane;
use crate::error::{ApiError, Exception};
use crate::model::{DeploymentSpec, serialized_name};
use crate::store::DeploymentRecord;
use gantry_core::deployment::TargetState;
use gantry_core::planner::Target;
use serde_json::Value;

/// The statuses a host of a deployment may have (ListDeploymentInstances' and
/// ListDeploymentTargets' filters).
pub(super) const INSTANCE_STATUSES: [&str; 7] = [
    "Pending",
    "InProgress",
    "Succeeded",
    "Failed",
    "Skipped",
    "Unknown",
    "Ready",
];

/// Blue/green labels; an in-place deployment's hosts are all Blue (the original ones).
pub(super) const INSTANCE_LABELS: [&str; 2] = ["Blue", "Green"];

/// A filter's values, each one of `allowed`.
pub(super) fn filter_values(
    value: Option<&Value>,
    field: &str,
    allowed: &[&str],
    exception: Exception,
) -> Result<Option<Vec<String>>, ApiError> {
    let values: Option<Vec<String>> =
        match value {
            None | Some(Value::Null) => None,
            Some(value) => Some(serde_json::from_value(value.clone()).map_err(|_| {
                ApiError::invalid_input(format!("{field}: must be a list of strings"))
            })?),
        };
    for value in values.iter().flatten() {
        if !allowed.contains(&value.as_str()) {
            return Err(ApiError::new(
                exception,
                format!("{field}: {value:?} is not one of {}", allowed.join(", ")),
            ));
        }
    }
    Ok(values)
}

/// The hosts of a deployment in its order, a page at a time (the page's ids and the next
/// page's token), those with one of `statuses` and `labels` if given. Statuses are read
/// only as far as one page needs.
pub(super) async fn list_hosts(
    control: &ControlPlane,
    record: &DeploymentRecord<DeploymentSpec>,
    input: &Value,
    statuses: Option<Vec<String>>,
    labels: Option<Vec<String>>,
) -> Result<(Vec<String>, Option<String>), ApiError> {
    let plan = control.store.plan(&record.spec.deployment_id).await?;
    let ids: Vec<String> = plan
        .iter()
        .enumerate()
        .filter(|(index, _)| {
            let label = instance_label(&record.state, *index as u32);
            labels
                .as_ref()
                .is_none_or(|labels| labels.iter().any(|l| l == label))
        })
        .map(|(_, t)| t.instance_id.clone())
        .collect();
    let Some(statuses) = statuses else {
        let (ids, next) = page(ids, input, String::clone)?;
        return Ok((ids, next));
    };
    let start = page_start(&ids, input, String::clone)?;
    let mut plan = Some(plan);
    let mut kept: Vec<String> = Vec::new();
    let mut next = None;
    'pages: for chunk in ids[start..].chunks(PAGE_SIZE) {
        for (id, state) in host_states(control, record, chunk, &mut plan).await? {
            if kept.len() == PAGE_SIZE {
                next = kept.last().map(|last| encode_token(last));
                break 'pages;
            }
            if state.is_some_and(|state| {
                statuses.contains(&serialized_name(&shown_status(&record.state, &state)))
            }) {
                kept.push(id);
            }
        }
    }
    Ok((kept, next))
}

/// Each of the `wanted` hosts of a deployment, in the order asked, with its state: its
/// record once it has been sent its command, or what the plan says it is while it waits;
/// `None` for one that is not a target. `plan` is read the first time a host has no
/// record, and kept for the next call.
pub(super) async fn host_states(
    control: &ControlPlane,
    record: &DeploymentRecord<DeploymentSpec>,
    wanted: &[String],
    plan: &mut Option<Vec<Target>>,
) -> Result<Vec<(String, Option<TargetState>)>, ApiError> {
    let id = &record.spec.deployment_id;
    let found = control.store.load_targets(id, wanted).await?;
    let mut states = Vec::with_capacity(wanted.len());
    for target_id in wanted {
        let state = match found.get(target_id) {
            Some(versioned) => Some(versioned.value.clone()),
            None => {
                if plan.is_none() {
                    *plan = Some(control.store.plan(id).await?);
                }
                let plan = plan.as_deref().unwrap_or_default();
                plan.iter()
                    .position(|t| &t.instance_id == target_id)
                    .map(|index| {
                        TargetState::waiting(
                            plan[index].clone(),
                            index as u32,
                            record.state.events_at(index as u32),
                            record.state.status,
                        )
                    })
            }
        };
        states.push((target_id.clone(), state));
    }
    Ok(states)
}
