"""Auto Scaling lifecycle hooks, as AWS documents them (moto stores hooks and stops there).

- A launch in a group with EC2_INSTANCE_LAUNCHING hooks leaves the instance in
  Pending:Wait; a scale-in or TerminateInstanceInAutoScalingGroup in a group with
  EC2_INSTANCE_TERMINATING hooks leaves it in Terminating:Wait (it is deregistered from
  the group's target groups first, as AWS does; the stand-in does not wait for the
  draining to end before the hook).
- Each hook's notification goes to its NotificationTargetARN (an SQS queue or an SNS
  topic) in AWS's JSON format, one lifecycle action (and token) per hook and instance.
  PutLifecycleHook sends `autoscaling:TEST_NOTIFICATION`, and fails as AWS does when the
  target does not exist.
- CompleteLifecycleAction (by token or instance id) and RecordLifecycleActionHeartbeat.
  When every hook of an instance's transition is complete, a launch goes InService
  (registered with its target groups) or, if any hook said ABANDON, is terminated and
  replaced; a termination ends with the instance terminated.
- A hook's HeartbeatTimeout (any number of seconds: the stand-in allows values below
  AWS's minimum of 30, for tests) applies its DefaultResult; heartbeats push it back, up
  to the global timeout (100 heartbeat timeouts, at most 48 hours), as AWS does.

Instances an Auto Scaling group launches get its launch configuration's
IamInstanceProfile (moto gives them none; launch templates' are not read).

Deleting the group (moto's DeleteAutoScalingGroup is a ForceDelete) or terminating an
instance through EC2 runs no hooks. Everything here runs under `LOCK`, which every
Auto Scaling request also holds: moto's server is threaded and the timers are not
requests.
"""

import json
import threading
import time
import uuid
from datetime import datetime, timezone

from moto.autoscaling import models as asg_models
from moto.autoscaling.exceptions import ValidationError
from moto.autoscaling.responses import AutoScalingResponse
from moto.core.responses import EmptyResult

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
MAX_GLOBAL_TIMEOUT = 172800

LOCK = threading.RLock()
# Pending lifecycle actions by token.
_actions = {}
# Set while moto runs code that must not run hooks (deleting a group).
_bypass = threading.local()

Group = asg_models.FakeAutoScalingGroup
Backend = asg_models.AutoScalingBackend


class Action:
    """One hook's lifecycle action for one instance."""

    def __init__(self, hook, group, state, transition):
        self.token = str(uuid.uuid4())
        self.hook = hook
        self.group = group
        self.state = state
        self.transition = transition
        self.result = None
        now = time.monotonic()
        self.global_deadline = now + min(100 * hook.heartbeat_timeout, MAX_GLOBAL_TIMEOUT)
        self.timer = None

    @property
    def instance_id(self):
        return self.state.instance.id

    def arm(self):
        """(Re)starts the heartbeat timer, never past the global timeout."""
        if self.timer is not None:
            self.timer.cancel()
        delay = min(self.hook.heartbeat_timeout, self.global_deadline - time.monotonic())
        self.timer = threading.Timer(max(delay, 0), _timed_out, args=(self.token,))
        self.timer.daemon = True
        self.timer.start()

    def cancel(self):
        if self.timer is not None:
            self.timer.cancel()
        _actions.pop(self.token, None)


def _now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _hooks(group, transition):
    backend = group.autoscaling_backend
    return [
        hook
        for hook in list(backend.lifecycle_hooks.values())
        if hook.auto_scaling_group_name == group.name and hook.lifecycle_transition == transition
    ]


# --- notifications -------------------------------------------------------------------


def _target_exists(arn):
    from moto.sns.models import sns_backends
    from moto.sqs.models import sqs_backends

    try:
        _, _, service, region, account, name = arn.split(":", 5)
    except ValueError:
        return False
    if service == "sqs":
        return name in sqs_backends[account][region].queues
    if service == "sns":
        return arn in sns_backends[account][region].topics
    return False


def _send(arn, body, subject):
    """Delivers `body` to an SQS queue or SNS topic named by `arn`; a target gone since
    the hook was put loses the message, as it would in AWS."""
    from moto.sns.models import sns_backends
    from moto.sqs.models import sqs_backends

    if not arn or not _target_exists(arn):
        return
    _, _, service, region, account, name = arn.split(":", 5)
    message = json.dumps(body)
    if service == "sqs":
        sqs_backends[account][region].send_message(name, message)
    else:
        sns_backends[account][region].publish(message, arn=arn, subject=subject)


def _notify(action):
    group, hook = action.group, action.hook
    launching = action.transition == LAUNCHING
    body = {
        "Origin": "EC2" if launching else "AutoScalingGroup",
        "LifecycleHookName": hook.name,
        "Destination": "AutoScalingGroup" if launching else "EC2",
        "AccountId": group.account_id,
        "RequestId": str(uuid.uuid4()),
        "LifecycleTransition": action.transition,
        "AutoScalingGroupName": group.name,
        "Service": "AWS Auto Scaling",
        "Time": _now(),
        "EC2InstanceId": action.instance_id,
        "LifecycleActionToken": action.token,
    }
    if getattr(hook, "notification_metadata", None):
        body["NotificationMetadata"] = hook.notification_metadata
    verb = "LAUNCHING" if launching else "TERMINATING"
    subject = f"Auto Scaling:  Lifecycle action '{verb}' for instance {action.instance_id} in progress."
    _send(hook.notification_target_arn, body, subject)


def _test_notification(group_name, backend, arn):
    group = backend.autoscaling_groups.get(group_name)
    body = {
        "AccountId": backend.account_id,
        "RequestId": str(uuid.uuid4()),
        "AutoScalingGroupARN": group.arn if group else "",
        "AutoScalingGroupName": group_name,
        "Service": "AWS Auto Scaling",
        "Event": "autoscaling:TEST_NOTIFICATION",
        "Time": _now(),
    }
    _send(arn, body, f'Auto Scaling: test notification for group "{group_name}"')


# --- transitions ---------------------------------------------------------------------


def _start(group, state, transition, hooks):
    """Holds `state` in the transition's wait state, one action per hook."""
    state.lifecycle_state = "Pending:Wait" if transition == LAUNCHING else "Terminating:Wait"
    for hook in hooks:
        action = Action(hook, group, state, transition)
        _actions[action.token] = action
        action.arm()
        _notify(action)


def _cancel_for(instance_id):
    for action in [a for a in _actions.values() if a.instance_id == instance_id]:
        action.cancel()


def _target_groups(group):
    backend = group.autoscaling_backend.elbv2_backend
    return [backend.target_groups[arn] for arn in group.target_group_arns if arn in backend.target_groups]


def _deregister(group, instance_id):
    """Takes the instance out of the group's target groups (they drain it)."""
    for target_group in _target_groups(group):
        if instance_id in target_group.targets:
            group.autoscaling_backend.elbv2_backend.deregister_targets(target_group.arn, [{"Id": instance_id}])


def _terminate(group, state):
    """Ends an instance for good: out of the group, its load balancers, and EC2."""
    _cancel_for(state.instance.id)
    if state in group.instance_states:
        group.instance_states.remove(state)
    _deregister(group, state.instance.id)
    group.autoscaling_backend.ec2_backend.terminate_instances([state.instance.id])


def _finish(action):
    """Called when an action got its result: moves the instance on once every hook of
    its transition has answered (ABANDON ends the others at once)."""
    group, state = action.group, action.state
    action.cancel()
    siblings = [a for a in _actions.values() if a.state is state and a.transition == action.transition]
    if action.result == "ABANDON":
        for other in siblings:
            other.cancel()
    elif siblings:
        return
    backend = group.autoscaling_backend
    if action.transition == TERMINATING:
        _terminate(group, state)
    elif action.result == "ABANDON":
        _terminate(group, state)
        # The group is below its desired capacity: Auto Scaling launches a replacement.
        if group.name in backend.autoscaling_groups:
            group.set_desired_capacity(group.desired_capacity)
    else:
        state.lifecycle_state = "InService"
        if group.name in backend.autoscaling_groups:
            backend.update_attached_elbs(group.name)
            backend.update_attached_target_groups(group.name)


def _timed_out(token):
    with LOCK:
        action = _actions.get(token)
        if action is None:
            return
        action.result = action.hook.default_result
        _finish(action)


def _find_action(group_name, hook_name, token, instance_id):
    for action in list(_actions.values()):
        if action.group.name != group_name or action.hook.name != hook_name:
            continue
        if token and action.token != token:
            continue
        if instance_id and action.instance_id != instance_id:
            continue
        return action
    if token:
        raise ValidationError(f"No active Lifecycle Action found with token {token}")
    raise ValidationError(f"No active Lifecycle Action found with instance ID {instance_id}")


# --- moto, patched -------------------------------------------------------------------

_replace = Group.replace_autoscaling_group_instances
_set_desired = Group.set_desired_capacity
_update_target_groups = Backend.update_attached_target_groups
_terminate_instance = Backend.terminate_instance
_delete_group = Backend.delete_auto_scaling_group
_notify_terminate = Backend.notify_terminate_instances
_create_hook = Backend.create_lifecycle_hook
_call_action = AutoScalingResponse.call_action

WAITING = ("Pending", "Pending:Wait", "Pending:Proceed")


def _active_instances(self):
    # Launching instances count toward the capacity, as in AWS: without this, a
    # SetDesiredCapacity while one waits would launch another.
    return [s for s in self.instance_states if s.lifecycle_state == "InService" or s.lifecycle_state in WAITING]


def _give_profile(group, state):
    """The launch configuration's instance profile, which moto does not give its instances
    (the fleet runner's metadata service answers the role's credentials)."""
    profile = getattr(group.launch_config, "iam_instance_profile", None)
    if not profile:
        return
    key = "iam_instance_profile_arn" if profile.startswith("arn:") else "iam_instance_profile_name"
    try:
        group.autoscaling_backend.ec2_backend.associate_iam_instance_profile(state.instance.id, **{key: profile})
    except Exception:  # a profile IAM does not know: the instance goes without, as in moto
        pass


def _replace_instances(self, count_needed, propagated_tags):
    before = len(self.instance_states)
    _replace(self, count_needed, propagated_tags)
    for state in self.instance_states[before:]:
        _give_profile(self, state)
    hooks = _hooks(self, LAUNCHING)
    if hooks and self.name in self.autoscaling_backend.autoscaling_groups:
        for state in self.instance_states[before:]:
            _start(self, state, LAUNCHING, hooks)


def _set_desired_capacity(self, new_capacity):
    """moto's, with the instances it scales in held in Terminating:Wait by the group's
    termination hooks, and taken out of its target groups."""
    me = threading.get_ident()
    hooks = [] if getattr(_bypass, "on", False) else _hooks(self, TERMINATING)
    # Instances already terminating are no longer the group's capacity: hidden from moto.
    waiting = [s for s in self.instance_states if s.lifecycle_state.startswith("Terminating")]
    self.instance_states = [s for s in self.instance_states if s not in waiting]
    before = list(self.instance_states)
    ec2 = self.autoscaling_backend.ec2_backend
    real_terminate = ec2.terminate_instances
    deferred = []

    def terminate(instance_ids):
        # Only this call's terminations wait on hooks; other threads' go through.
        if threading.get_ident() == me and hooks:
            deferred.extend(instance_ids)
            return []
        return real_terminate(instance_ids)

    ec2.terminate_instances = terminate
    try:
        _set_desired(self, new_capacity)
    finally:
        del ec2.terminate_instances
        self.instance_states.extend(waiting)
    remaining = set(map(id, self.instance_states))
    for state in before:
        if id(state) in remaining:
            continue
        _cancel_for(state.instance.id)
        _deregister(self, state.instance.id)
        if state.instance.id in deferred:
            self.instance_states.append(state)
            _start(self, state, TERMINATING, hooks)


def _update_attached_target_groups(self, group_name):
    # Instances waiting on a launch hook, or terminating, are not registered (AWS
    # registers an instance once its launch is complete).
    group = self.autoscaling_groups[group_name]
    everyone = group.instance_states
    group.instance_states = [
        s for s in everyone if s.lifecycle_state not in WAITING and not s.lifecycle_state.startswith("Terminating")
    ]
    try:
        _update_target_groups(self, group_name)
    finally:
        group.instance_states = everyone


def _terminate_instance_in_group(self, instance_id, should_decrement):
    state = next(
        (s for g in self.autoscaling_groups.values() for s in g.instance_states if s.instance.id == instance_id),
        None,
    )
    if state is None or state.lifecycle_state.startswith("Terminating"):
        raise ValidationError(f"Instance Id not found - No managed instance found for instance ID: {instance_id}")
    group = state.auto_scaling_group
    hooks = _hooks(group, TERMINATING)
    if not hooks:
        _cancel_for(instance_id)
        return _terminate_instance(self, instance_id, should_decrement)
    original_size = group.desired_capacity
    _cancel_for(instance_id)
    group.instance_states.remove(state)
    if should_decrement:
        group.desired_capacity -= 1
    # Launches a replacement unless the capacity went down with it.
    group.set_desired_capacity(group.desired_capacity)
    _deregister(group, instance_id)
    group.instance_states.append(state)
    _start(group, state, TERMINATING, hooks)
    return asg_models.TerminateInstanceActivity(state.instance, original_size)


def _delete_auto_scaling_group(self, group_name):
    group = self.autoscaling_groups.get(group_name)
    if group is not None:
        # Instances held by a termination hook end now (moto's delete is a ForceDelete).
        for state in [s for s in group.instance_states if s.lifecycle_state.startswith("Terminating")]:
            _terminate(group, state)
    _bypass.on = True
    try:
        _delete_group(self, group_name)
    finally:
        _bypass.on = False
    # Its hooks and pending actions go with it, as in AWS.
    for key, hook in list(self.lifecycle_hooks.items()):
        if hook.auto_scaling_group_name == group_name:
            del self.lifecycle_hooks[key]
    for action in [a for a in _actions.values() if a.group is group]:
        action.cancel()


def _notify_terminate_instances(self, instance_ids):
    with LOCK:
        for instance_id in instance_ids:
            _cancel_for(instance_id)
        _notify_terminate(self, instance_ids)


def _create_lifecycle_hook(self, name, as_name, transition, timeout, result, **extra):
    """moto's, keeping the target, role and metadata (moto answers constants), keeping
    what an update leaves out (as PutLifecycleHook does), and sending the test
    notification."""
    previous = self.lifecycle_hooks.get(f"{as_name}_{name}")
    target = extra.get("target") or (previous.notification_target_arn if previous else None)
    role = extra.get("role") or (previous.role_arn if previous else None)
    if target and not _target_exists(target):
        raise ValidationError(
            f"Unable to publish test message to notification target {target} using IAM role {role}. "
            "Please check your target and role configuration and try to put lifecycle hook again."
        )
    if previous is not None:
        transition = transition or previous.lifecycle_transition
        timeout = timeout or previous.heartbeat_timeout
        result = result or previous.default_result
    hook = _create_hook(self, name, as_name, transition, timeout, result)
    hook.notification_target_arn = target
    hook.role_arn = role
    metadata = extra.get("metadata")
    hook.notification_metadata = metadata if metadata is not None else getattr(previous, "notification_metadata", None)
    hook.global_timeout = min(100 * hook.heartbeat_timeout, MAX_GLOBAL_TIMEOUT)
    if target and (previous is None or previous.notification_target_arn != target):
        _test_notification(as_name, self, target)
    return hook


def _put_lifecycle_hook(self):
    self.autoscaling_backend.create_lifecycle_hook(
        name=self._get_param("LifecycleHookName"),
        as_name=self._get_param("AutoScalingGroupName"),
        transition=self._get_param("LifecycleTransition"),
        timeout=self._get_int_param("HeartbeatTimeout"),
        result=self._get_param("DefaultResult"),
        target=self._get_param("NotificationTargetARN"),
        role=self._get_param("RoleARN"),
        metadata=self._get_param("NotificationMetadata"),
    )
    return EmptyResult()


def _complete_lifecycle_action(self):
    result = self._get_param("LifecycleActionResult")
    if result not in ("CONTINUE", "ABANDON"):
        raise ValidationError("LifecycleActionResult must be CONTINUE or ABANDON")
    action = _find_action(
        self._get_param("AutoScalingGroupName"),
        self._get_param("LifecycleHookName"),
        self._get_param("LifecycleActionToken"),
        self._get_param("InstanceId"),
    )
    action.result = result
    _finish(action)
    return EmptyResult()


def _record_lifecycle_action_heartbeat(self):
    action = _find_action(
        self._get_param("AutoScalingGroupName"),
        self._get_param("LifecycleHookName"),
        self._get_param("LifecycleActionToken"),
        self._get_param("InstanceId"),
    )
    action.arm()
    return EmptyResult()


def _locked_call_action(self):
    with LOCK:
        return _call_action(self)


def reset():
    """moto's reset (`POST /moto-api/reset`) forgot every group: so do the timers."""
    with LOCK:
        for action in list(_actions.values()):
            action.cancel()


def install():
    Group.active_instances = _active_instances
    Group.replace_autoscaling_group_instances = _replace_instances
    Group.set_desired_capacity = _set_desired_capacity
    Backend.update_attached_target_groups = _update_attached_target_groups
    Backend.terminate_instance = _terminate_instance_in_group
    Backend.delete_auto_scaling_group = _delete_auto_scaling_group
    Backend.notify_terminate_instances = _notify_terminate_instances
    Backend.create_lifecycle_hook = _create_lifecycle_hook
    AutoScalingResponse.put_lifecycle_hook = _put_lifecycle_hook
    AutoScalingResponse.complete_lifecycle_action = _complete_lifecycle_action
    AutoScalingResponse.record_lifecycle_action_heartbeat = _record_lifecycle_action_heartbeat
    AutoScalingResponse.call_action = _locked_call_action
