"""ELBv2 target health from real health checks (moto answers `healthy` for every target).

A background thread checks every registered target of every target group that a load
balancer's listener forwards to, as ELB does:
- HTTP/HTTPS: GET HealthCheckPath on the target's address (see `addresses`) and port
  (the target's, or HealthCheckPort), passing when the status is in Matcher.HttpCode
  ("200", "200,202", "200-299"); TCP: a connection.
- every HealthCheckIntervalSeconds, each check given HealthCheckTimeoutSeconds;
- `initial` until HealthyThresholdCount passes in a row (`healthy`) or
  UnhealthyThresholdCount failures in a row (`unhealthy`), and between the two the same way.

Short intervals are allowed for tests: below AWS's minimum of 5 seconds (1 is fine), the
timeout may equal the interval and defaults to it.

A deregistered target (or a terminated instance) is `draining` for the target group's
`deregistration_delay.timeout_seconds`, listed by DescribeTargetHealth, then gone
(`unused`, Target.NotRegistered, when asked for by id). A target group no listener
forwards to reports its targets `unused` (Target.NotInUse), as AWS does, and checks none.
Listener rules other than the default action are not read.
"""

import http.client
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from moto.elbv2 import models as elb_models

from .addresses import target_host

TargetGroup = elb_models.FakeTargetGroup
Backend = elb_models.ELBv2Backend
Status = elb_models.FakeHealthStatus

AWS_MIN_INTERVAL = 5
TICK = 0.05

_lock = threading.Lock()
# (target group arn, target id) -> _Record, for registered targets being checked.
_records = {}
# (target group arn, target id) -> (target, monotonic time the draining ends).
_draining = {}


class _Record:
    def __init__(self):
        self.state = "initial"
        self.reason = "Elb.InitialHealthChecking"
        self.description = "Initial health checks in progress"
        self.passes = 0
        self.failures = 0
        self.next_check = 0.0
        self.checking = False


# --- what the proxy and DescribeTargetHealth read ----------------------------------------


def state_of(target_group, target_id):
    """`healthy`, `initial`, `unhealthy`, `draining` or None (not registered)."""
    with _lock:
        drain = _draining.get((target_group.arn, target_id))
        if target_id in target_group.targets:
            record = _records.get((target_group.arn, target_id))
            return record.state if record else "initial"
        if drain and drain[1] > time.monotonic():
            return "draining"
        return None


def draining(target_group):
    """The targets of `target_group` draining now."""
    now = time.monotonic()
    with _lock:
        return [t for (arn, _), (t, end) in _draining.items() if arn == target_group.arn and end > now]


def in_use(backend, target_group):
    """Whether some listener's default action forwards to the target group."""
    for balancer in list(backend.load_balancers.values()):
        for listener in list(balancer.listeners.values()):
            for action in listener.default_actions:
                if action.type == "forward" and target_group.arn in backend._get_target_group_arns_from(action.data):
                    return True
    return False


def _backends():
    for regions in list(elb_models.elbv2_backends.values()):
        for backend in list(regions.values()):
            yield backend


def _backend_of(target_group):
    return elb_models.elbv2_backends[target_group.account_id][target_group.region_name]


# --- the checks ---------------------------------------------------------------------


def _codes(matcher):
    """The set test of Matcher.HttpCode: "200", "200,202", "200-299"."""
    spans = []
    for part in str(matcher or "200").split(","):
        low, _, high = part.strip().partition("-")
        spans.append((int(low), int(high or low)))
    return lambda code: any(low <= code <= high for low, high in spans)


def _check(target_group, target):
    """One health check: (passed, reason, description)."""
    host = target_host(target_group, target["Id"])
    if host is None:
        return False, "Target.FailedHealthChecks", "Health checks failed"
    port = target_group.health_check_port
    port = int(target["Port"] if port in (None, "traffic-port") else port)
    timeout = max(0.1, min(float(target_group.health_check_timeout_seconds), float(target_group.health_check_interval_seconds)))
    protocol = (target_group.health_check_protocol or "HTTP").upper()
    try:
        if protocol not in ("HTTP", "HTTPS"):
            socket.create_connection((host, port), timeout=timeout).close()
            return True, None, None
        if protocol == "HTTPS":
            connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=ssl._create_unverified_context())
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            connection.request("GET", target_group.health_check_path or "/", headers={"User-Agent": "ELB-HealthChecker/2.0"})
            response = connection.getresponse()
            response.read()  # read to the end: closing on unread data resets the connection
            code = response.status
        finally:
            connection.close()
    except socket.timeout:
        return False, "Target.Timeout", "Request timed out"
    except OSError:
        return False, "Target.FailedHealthChecks", "Health checks failed"
    matcher = (getattr(target_group, "matcher", None) or {}).get("HttpCode", "200")
    if _codes(matcher)(code):
        return True, None, None
    return False, "Target.ResponseCodeMismatch", f"Health checks failed with these codes: [{code}]"


def _run_check(key, target_group, target):
    passed, reason, description = _check(target_group, target)
    with _lock:
        record = _records.get(key)
        if record is None:  # deregistered meanwhile
            return
        record.checking = False
        if passed:
            record.passes, record.failures = record.passes + 1, 0
            if record.state != "healthy" and record.passes >= int(target_group.healthy_threshold_count):
                record.state, record.reason, record.description = "healthy", None, None
        else:
            record.passes, record.failures = 0, record.failures + 1
            if record.state == "unhealthy" or record.failures >= int(target_group.unhealthy_threshold_count):
                record.state, record.reason, record.description = "unhealthy", reason, description


def _tick(pool):
    now = time.monotonic()
    for backend in _backends():
        for target_group in list(backend.target_groups.values()):
            used = target_group.health_check_enabled and in_use(backend, target_group)
            targets = list(target_group.targets.values())
            with _lock:
                for target in targets:
                    key = (target_group.arn, target["Id"])
                    if not used:
                        # Checks start over once a listener forwards to the group.
                        _records.pop(key, None)
                        continue
                    record = _records.setdefault(key, _Record())
                    if record.checking or record.next_check > now:
                        continue
                    record.checking = True
                    record.next_check = now + float(target_group.health_check_interval_seconds)
                    pool.submit(_run_check, key, target_group, target)
    with _lock:
        for key in [k for k, (_, end) in _draining.items() if end <= now]:
            del _draining[key]


def _checker():
    pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="health-check")
    while True:
        try:
            _tick(pool)
        except Exception:  # a target group changing under us: next tick sees it settled
            pass
        time.sleep(TICK)


# --- moto, patched -------------------------------------------------------------------

_create_target_group = Backend.create_target_group
_register = TargetGroup.register
_deregister = TargetGroup.deregister
_deregister_terminated = TargetGroup.deregister_terminated_instances
_health_for = TargetGroup.health_for
_describe_target_health = Backend.describe_target_health


def _create(self, name, **kwargs):
    interval = kwargs.get("healthcheck_interval_seconds")
    if interval is None or int(interval) >= AWS_MIN_INTERVAL:
        return _create_target_group(self, name, **kwargs)
    # A test's short interval: moto's check (timeout < interval) would refuse any
    # timeout, so it sees a long interval and the group gets the short one after.
    kwargs["healthcheck_interval_seconds"] = 300
    timeout = kwargs.get("healthcheck_timeout_seconds")
    target_group = _create_target_group(self, name, **kwargs)
    target_group.health_check_interval_seconds = int(interval)
    target_group.health_check_timeout_seconds = min(int(timeout or interval), int(interval))
    return target_group


def _delay(target_group):
    return float(target_group.attributes.get("deregistration_delay.timeout_seconds", 300))


def _registered(self, targets):
    _register(self, targets)
    with _lock:
        for target in targets:
            _draining.pop((self.arn, target["Id"]), None)


def _start_draining(target_group, removed):
    end = time.monotonic() + _delay(target_group)
    with _lock:
        for target in removed:
            _records.pop((target_group.arn, target["Id"]), None)
            _draining[(target_group.arn, target["Id"])] = (target, end)


def _deregistered(self, targets):
    before = dict(self.targets)
    _deregister(self, targets)
    _start_draining(self, [before[t["Id"]] for t in targets if t["Id"] in before])


def _deregistered_terminated(self, instance_ids):
    removed = [t for i, t in self.targets.items() if i in instance_ids]
    _deregister_terminated(self, instance_ids)
    _start_draining(self, removed)


def _health(self, target, ec2_backend):
    target_id = target["Id"]
    registered = self.targets.get(target_id)
    port = (registered or target).get("Port", self.port)
    if registered is not None:
        instance = ec2_backend.get_instance_by_id(target_id) if target_id.startswith("i-") else None
        if instance is not None and instance.state != "running":
            return _health_for(self, target, ec2_backend)
        if not in_use(_backend_of(self), self):
            return Status(target_id, port, self.health_check_port, "unused", "Target.NotInUse",
                          "Target group is not configured to receive traffic from the load balancer")
        if not self.health_check_enabled:
            return Status(target_id, port, self.health_check_port, "unavailable", "Target.HealthCheckDisabled",
                          "Health checks are disabled")
        with _lock:
            record = _records.get((self.arn, target_id)) or _Record()
            return Status(target_id, port, self.health_check_port, record.state, record.reason, record.description)
    if state_of(self, target_id) == "draining":
        return Status(target_id, port, self.health_check_port, "draining", "Target.DeregistrationInProgress",
                      "Target deregistration is in progress")
    return Status(target_id, port, self.health_check_port, "unused", "Target.NotRegistered",
                  "Target is not registered to the target group")


def _describe_health(self, target_group_arn, targets):
    target_group = self.target_groups.get(target_group_arn)
    if target_group is not None and not targets:
        # AWS lists the targets still draining with the registered ones.
        targets = list(target_group.targets.values()) + draining(target_group)
    return _describe_target_health(self, target_group_arn, targets)


def reset():
    """moto's reset forgot every target group: so does the checker."""
    with _lock:
        _records.clear()
        _draining.clear()


def install():
    Backend.create_target_group = _create
    TargetGroup.register = _registered
    TargetGroup.deregister = _deregistered
    TargetGroup.deregister_terminated_instances = _deregistered_terminated
    TargetGroup.health_for = _health
    Backend.describe_target_health = _describe_health
    threading.Thread(target=_checker, name="health-checker", daemon=True).start()
