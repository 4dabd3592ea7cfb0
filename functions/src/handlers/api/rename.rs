//! UpdateApplication's rename: everything keyed by the application's name moves to the
//! new name, as CodeDeploy renames an application with its groups and revisions.
//!
//! What moves: the application item (with its tags), its revisions, and each group: the
//! group's item (settings, lock, last successful and attempted deployments, target
//! revision, tags), its instance health, the index key that lists its deployments, and
//! its Auto Scaling hooks' metadata. Past deployments keep the applicationName they were
//! made with: they are history, a record of what was deployed under which name.
//!
//! The steps, and what a crash after each leaves (a call again with the same names
//! finishes the job, as it does after a refusal part-way, such as a deployment started
//! meanwhile on a group not moved yet; the old name's application stays until the last
//! step, so it is never lost):
//! 1. Reserve the new name: the new item (marked `renamedFrom`) and the old one's mark
//!    (`renamingTo`), in one transaction. Crash: both names answer GetApplication; the
//!    new one has no groups or revisions yet; everything still works by the old name.
//! 2. Move the revisions, 50 to a transaction (put under the new name if absent there,
//!    delete under the old if unchanged). Crash: each revision is under exactly one
//!    name; CreateDeployment registers a revision it does not find, so deploying by
//!    either name still works.
//! 3. Move each group, one transaction per group (put new if absent, delete old if
//!    unchanged and unlocked), marked `renamedFrom` on arrival. Crash: each group is
//!    under exactly one name, with its lock and history pointers.
//! 4. For each marked group: put its hooks again with the new name, move its health
//!    (50 records to a transaction: a group of 10,000 hosts takes 200), list its past
//!    deployments under the new name, then take its mark off. Crash: the group works by
//!    its new name; until a call again finishes it, a launch whose hook still names the
//!    old application is let through without a deployment (the lifecycle function's rule
//!    for a group that is gone), hosts whose health has not moved are ordered as
//!    Unknown, and some past deployments are listed by the old name only. The mark
//!    tells the next call which groups to finish.
//! 5. When nothing is left under the old name: delete the old item and take the new
//!    one's mark off (with the old one's tags as they are then), in one transaction.
//!
//! A group or revision created under the old name while this runs is moved by the loop
//! around steps 2-5; one created in the instant between the last check and step 5 is
//! left behind, as one created while DeleteApplication runs is.

use super::applications::already_exists;
use super::check_name;
use super::load;
use crate::adapters::{HookKind, MANAGED_TAG};
use crate::control::ControlPlane;
use crate::error::{ApiError, Exception};
use crate::group_hooks::hook_kinds;
use crate::model::{ApplicationInfo, DeploymentGroupSettings};
use crate::store::{GroupMove, StoreError, keys};

/// Passes over the old name before giving up on an application that keeps changing.
const ROUNDS: usize = 4;

/// Renames application `old` to `new` (both given, different), or finishes a rename of
/// `old` to `new` that a crash or a refusal interrupted.
pub async fn rename(control: &ControlPlane, old: &str, new: &str) -> Result<(), ApiError> {
    let store = &control.store;
    let marks = store
        .rename_marks(old)
        .await?
        .ok_or_else(|| ApiError::application_missing(old))?;
    if let Some(from) = &marks.renamed_from
        && store
            .rename_marks(from)
            .await?
            .is_some_and(|theirs| theirs.renaming_to.as_deref() == Some(old))
    {
        return Err(ApiError::new(
            Exception::InvalidOperation,
            format!(
                "applicationName: {old:?} is still being renamed from {from:?}; finish that first (UpdateApplication with applicationName {from:?} and newApplicationName {old:?})"
            ),
        ));
    }
    if let Some(to) = marks.renaming_to.as_deref().filter(|to| *to != new) {
        return Err(ApiError::new(
            Exception::InvalidOperation,
            format!(
                "newApplicationName: {old:?} is being renamed to {to:?}; finish that first (UpdateApplication with newApplicationName {to:?}), then rename {to:?}"
            ),
        ));
    }
    check_name("newApplicationName", new)?;
    let resuming = match store.rename_marks(new).await? {
        None => false,
        Some(theirs) if theirs.renamed_from.as_deref() == Some(old) => true,
        Some(_) => return Err(already_exists("newApplicationName", new)),
    };
    refuse_while_deploying(control, old).await?;
    check_hooks_can_move(control, old, new).await?;
    if !resuming {
        let info = store
            .get::<ApplicationInfo>(keys::APPLICATIONS, old)
            .await?
            .ok_or_else(|| ApiError::application_missing(old))?
            .value;
        let renamed = ApplicationInfo {
            application_name: new.to_owned(),
            ..info
        };
        match store.reserve_application_name(old, new, &renamed).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(match store.rename_marks(old).await? {
                    None => ApiError::application_missing(old),
                    Some(_) => already_exists("newApplicationName", new),
                });
            }
            Err(other) => return Err(other.into()),
        }
    }
    for _ in 0..ROUNDS {
        store.move_revisions(old, new).await?;
        let groups: Vec<DeploymentGroupSettings> = store.list(&keys::groups(old)).await?;
        for group in &groups {
            move_group(control, old, new, &group.deployment_group_name).await?;
        }
        // Groups moved by this call or by one a crash cut short.
        for group in store.groups_moved_from(new, old).await? {
            follow_group(control, old, new, &group).await?;
        }
        if !store.partition_is_empty(&keys::groups(old)).await?
            || !store.partition_is_empty(&keys::revisions(old)).await?
        {
            continue; // created under the old name meanwhile
        }
        match store.finish_application_rename(old, new).await {
            Ok(()) => return Ok(()),
            Err(StoreError::Conflict(_)) => {
                // Another call finished it, or the old name was tagged meanwhile.
                let finished = store.rename_marks(old).await?.is_none()
                    && store
                        .rename_marks(new)
                        .await?
                        .is_some_and(|theirs| theirs.renamed_from.is_none());
                if finished {
                    return Ok(());
                }
            }
            Err(other) => return Err(other.into()),
        }
    }
    Err(ApiError::new(
        Exception::ConcurrentModification,
        format!(
            "applicationName: {old:?} kept changing while it was renamed to {new:?}; call UpdateApplication again to finish"
        ),
    ))
}

/// Refuses while a deployment of one of `application`'s groups may still change: its
/// effects (health, the lock, the last successful revision) would be written under the
/// name it was made with. Launch deployments take no lock, so the group's lock alone
/// would not show them.
async fn refuse_while_deploying(control: &ControlPlane, application: &str) -> Result<(), ApiError> {
    for id in control.store.active_deployments_of(application).await? {
        let record = match load(control, &id).await {
            Ok(record) => record,
            Err(error) if error.code == Exception::DeploymentDoesNotExist => continue,
            Err(error) => return Err(error),
        };
        let state = &record.state;
        let settled = state.status.is_terminal()
            && state.counts().in_progress == 0
            && record.outbox.is_empty();
        if !settled {
            return Err(deploying(
                application,
                &record.spec.deployment_group_name,
                &id,
            ));
        }
    }
    Ok(())
}

fn deploying(application: &str, group: &str, deployment_id: &str) -> ApiError {
    ApiError::new(
        Exception::DeploymentAlreadyStarted,
        format!(
            "applicationName: deployment {deployment_id} of group {group:?} of {application:?} is still running; rename the application once it has ended (or stop it)"
        ),
    )
}

/// Refuses, before anything moves, a rename whose hooks could not be put again: on an
/// Auto Scaling group no longer tagged for Gantry, or without a lifecycle queue. Groups
/// that no longer exist have no hook to change.
async fn check_hooks_can_move(
    control: &ControlPlane,
    old: &str,
    new: &str,
) -> Result<(), ApiError> {
    let mut groups: Vec<DeploymentGroupSettings> = control.store.list(&keys::groups(old)).await?;
    for moved in control.store.groups_moved_from(new, old).await? {
        if let Some(group) = control.store.load_group(new, &moved).await? {
            groups.push(group.settings.value);
        }
    }
    let auto_scaling_groups: Vec<String> = groups
        .iter()
        .flat_map(|group| group.targets.auto_scaling_groups.iter().cloned())
        .collect();
    if auto_scaling_groups.is_empty() {
        return Ok(());
    }
    hook_target(control)?;
    let (_, untagged) = control.lifecycle.unusable(&auto_scaling_groups).await?;
    if !untagged.is_empty() {
        return Err(ApiError::new(
            Exception::InvalidAutoScalingGroup,
            format!(
                "newApplicationName: the launch hooks on {} name the application, and Gantry may change them only on Auto Scaling groups tagged {MANAGED_TAG}=true; tag them, or take them out of their deployment groups, then rename",
                untagged.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Where hooks notify, and the role Auto Scaling does it with.
fn hook_target(control: &ControlPlane) -> Result<(&str, &str), ApiError> {
    let settings = &control.settings;
    match (
        settings.lifecycle_queue_arn.as_deref(),
        settings.lifecycle_role_arn.as_deref(),
    ) {
        (Some(queue), Some(role)) => Ok((
            settings.lifecycle_topic_arn.as_deref().unwrap_or(queue),
            role,
        )),
        _ => Err(ApiError::invalid_input(
            "newApplicationName: the application's groups deploy to Auto Scaling groups, whose hooks name the application, and this Gantry has no lifecycle queue configured (GANTRY_LIFECYCLE_QUEUE_ARN and GANTRY_LIFECYCLE_ROLE_ARN) to put them again with the new name",
        )),
    }
}

/// Moves one group (step 3).
async fn move_group(
    control: &ControlPlane,
    old: &str,
    new: &str,
    group: &str,
) -> Result<(), ApiError> {
    match control.store.move_group(old, new, group).await? {
        GroupMove::Moved | GroupMove::Gone => Ok(()),
        GroupMove::Locked { deployment_id } => Err(deploying(old, group, &deployment_id)),
        GroupMove::NameTaken => Err(ApiError::new(
            Exception::DeploymentGroupAlreadyExists,
            format!(
                "newApplicationName: {new:?} has a deployment group {group:?} of its own (created while {old:?} was being renamed), and so has {old:?}; delete one of them, then call UpdateApplication again to finish"
            ),
        )),
    }
}

/// Brings a moved group's hooks, health and history to the new name, then takes its mark
/// off (step 4).
async fn follow_group(
    control: &ControlPlane,
    old: &str,
    new: &str,
    group: &str,
) -> Result<(), ApiError> {
    let store = &control.store;
    let Some(record) = store
        .load_group::<DeploymentGroupSettings>(new, group)
        .await?
    else {
        return Ok(()); // deleted by its new name meanwhile
    };
    let settings = &record.settings.value;
    put_hooks_again(control, new, group, settings).await?;
    store.move_group_health(old, new, group).await?;
    // The index lists a group's deployments by `application#group`. Keeping the old key
    // would hide them from the renamed group, and show them under any group later
    // created with the old names; so the key moves, while each deployment's own
    // applicationName stays as it was made.
    store.rekey_group_deployments(old, new, group).await?;
    store.finish_group_move(new, group, old).await?;
    Ok(())
}

/// Puts the group's hooks again (same names) with metadata naming `application`. Auto
/// Scaling groups that are gone are passed over. Unlike a new group's hooks, none is
/// removed when one fails: they all exist already, and a call again puts the rest.
async fn put_hooks_again(
    control: &ControlPlane,
    application: &str,
    group: &str,
    settings: &DeploymentGroupSettings,
) -> Result<(), ApiError> {
    let auto_scaling_groups = &settings.targets.auto_scaling_groups;
    if auto_scaling_groups.is_empty() {
        return Ok(());
    }
    let (target, role) = hook_target(control)?;
    let (missing, _) = control.lifecycle.unusable(auto_scaling_groups).await?;
    let metadata = crate::group_hooks::hook_metadata(application, group);
    let kinds: Vec<HookKind> = hook_kinds(settings);
    for auto_scaling_group in auto_scaling_groups
        .iter()
        .filter(|name| !missing.contains(name))
    {
        for kind in &kinds {
            let hook = kind.hook_name(&settings.deployment_group_id);
            control
                .lifecycle
                .put(auto_scaling_group, *kind, &hook, target, role, &metadata)
                .await?;
        }
    }
    Ok(())
}
