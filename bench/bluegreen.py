#!/usr/bin/env python3
"""What a blue/green deployment takes, end to end, with the stand-in's shortest settings
(issue 17's benchmarks), against a local moto server.

The stack is bench/lb.py's (its functions, imported): moto with the stand-in (real ELBv2
health checks, a loopback load balancer per listener), gantry-local, and
tests/fleet_runner.py, which runs a gantry-agent for every running EC2 instance, those of
Auto Scaling groups created later included. Target group `web` checks /health every
second, healthy and unhealthy after two, deregistration delay one second. examples/lb-app
v1 goes in place to Auto Scaling group `web` (four instances); then group `web` turns
BLUE_GREEN, WITH_TRAFFIC_CONTROL (COPY_AUTO_SCALING_GROUP, CONTINUE_DEPLOYMENT: no ready
wait, TERMINATE after 0 minutes), as tests/tests/blue_green.rs and demo/bluegreen.sh do,
and `--runs` new versions go blue/green, one after the other. Each copies the group's
current Auto Scaling group (the previous run's copy, which the group adopted), installs
on the copy's four instances, reroutes traffic to them HalfAtATime (two batches of two),
blocks the original four, and deletes the original group. Each starts with four healthy
targets and one agent per instance.

Times are the deployment's and its hosts' own (createTime, completeTime, lifecycleEvents'
startTime and endTime, as BatchGetDeploymentTargets gives them; replacement hosts are
labelled Green, original ones Blue), counted from when the harness sent CreateDeployment;
only the original group's removal is seen by polling DescribeAutoScalingGroups (every
GROUP_POLL seconds: it is the answer's receipt time that counts, a bound from above). Per
run:
- rerouted: the last replacement host's last traffic event (AllowTraffic or
  AfterAllowTraffic) ended;
- blocked: the last original host's BlockTraffic ended;
- terminated: the original Auto Scaling group is gone;
and the split of the whole into
- provisioning: CreateDeployment sent to the first replacement host's first event start
  (of it: the call itself, which copies the group before it stores the deployment, so
  createTime comes after the copy's instances exist; then the new instances' agents
  starting, the first command and its first event);
- installing: to the last replacement host's ValidateService end;
- rerouting: to the last replacement host's last traffic event end;
- blocking: to the last original host's BlockTraffic end;
- waiting and termination: to the original group gone (of it: to completeTime, the
  original hosts' AfterBlockTraffic and the 0-minute wait; then the group's deletion).
A client loop (bench/lb.py's: GET / through the load balancer, one connection per request,
every 10 ms) runs from before CreateDeployment until 20 requests after the original group
is gone; failed requests must be 0.

Writes bench/results/bluegreen.json and prints a Markdown table of medians (and maxima).
Usage:
    .venv/bin/python bench/bluegreen.py [--runs N] [--profile release|debug]
"""

import argparse
import json
import os
import tempfile
import threading
import time

from harness import ROOT, TARGET, api, stop, wait_for
from lb import (INSTANCES, ClientLoop, create_deployment, event_span, healthy_count, kill_recorded, median,
                push, set_up, wait_for_agents, wait_for_deployment)

DEPLOYMENT_TIMEOUT = 180
GROUP_GONE_TIMEOUT = 60
GROUP_POLL = 0.05

# The task's blue/green settings (tests/tests/blue_green.rs): no ready wait, the original
# fleet terminated as soon as it is blocked.
BLUE_GREEN = {
    "greenFleetProvisioningOption": {"action": "COPY_AUTO_SCALING_GROUP"},
    "deploymentReadyOption": {"actionOnTimeout": "CONTINUE_DEPLOYMENT"},
    "terminateBlueInstancesOnDeploymentSuccess": {"action": "TERMINATE", "terminationWaitTimeInMinutes": 0},
}
TRAFFIC_EVENTS = ("BeforeAllowTraffic", "AllowTraffic", "AfterAllowTraffic")
PHASES = ("provisioning", "installing", "rerouting", "blocking", "waiting_and_termination")


class GroupWatch:
    """Polls DescribeAutoScalingGroups for `name`, in a thread, until it is gone; `gone`
    is when the first answer without it was received."""

    def __init__(self, autoscaling, name):
        self.autoscaling = autoscaling
        self.name = name
        self.gone = None
        self.last_seen = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopping.is_set():
            sent = time.time()
            groups = self.autoscaling.describe_auto_scaling_groups(
                AutoScalingGroupNames=[self.name])["AutoScalingGroups"]
            received = time.time()
            if not groups:
                self.gone = received
                return
            self.last_seen = sent
            time.sleep(GROUP_POLL)

    def wait(self, timeout):
        self.thread.join(timeout)
        self.stopping.set()
        if self.gone is None:
            raise SystemExit(f"Auto Scaling group {self.name} was not deleted within {timeout} s")
        return self.gone


def group_asgs(endpoint):
    info = api(endpoint, "GetDeploymentGroup", {"applicationName": "shop", "deploymentGroupName": "web"})
    return [group["name"] for group in info["deploymentGroupInfo"]["autoScalingGroups"]]


def events_of(target, names):
    return [e for e in target["lifecycleEvents"] if e["lifecycleEventName"] in names]


def latest_end(hosts, names):
    return max(e["endTime"] for t in hosts for e in events_of(t, names) if e.get("endTime") is not None)


def earliest_start(hosts, names):
    return min(e["startTime"] for t in hosts for e in events_of(t, names) if e.get("startTime") is not None)


def first_event_start(hosts):
    return min(min(e["startTime"] for e in t["lifecycleEvents"] if e.get("startTime") is not None) for t in hosts)


def measure(setup, autoscaling, version):
    """One blue/green deployment of `version`, with the client loop and the original
    group watched; its times in seconds from CreateDeployment sent."""
    original_groups = group_asgs(setup.endpoint)
    if len(original_groups) != 1:
        raise SystemExit(f"group web deploys to {original_groups}, not one Auto Scaling group")
    loop = ClientLoop(setup.balancer)
    watch = GroupWatch(autoscaling, original_groups[0])
    try:
        sent = time.time()
        deployment_id = create_deployment(setup.endpoint, version)
        returned = time.time()
        info, hosts = wait_for_deployment(setup.endpoint, deployment_id, DEPLOYMENT_TIMEOUT)
        gone = watch.wait(GROUP_GONE_TIMEOUT)
    finally:
        watch.stopping.set()
        samples = loop.finish(time.time())
    progress = info.get("blueGreenProgress") or {}
    if progress.get("originalAutoScalingGroups") != original_groups:
        raise SystemExit(f"deployment {deployment_id}: original groups {progress}, expected {original_groups}")
    green = [t for t in hosts if t.get("instanceLabel") == "Green"]
    blue = [t for t in hosts if t.get("instanceLabel") == "Blue"]
    if len(green) != INSTANCES or len(blue) != INSTANCES:
        raise SystemExit(f"deployment {deployment_id}: {len(green)} Green and {len(blue)} Blue targets")

    marks = {
        "create_call_returned": returned,
        "create_time": info["createTime"],
        "first_replacement_event": first_event_start(green),
        "installed": latest_end(green, ("ValidateService",)),
        "first_allow_traffic": earliest_start(green, ("AllowTraffic",)),
        "rerouted": latest_end(green, TRAFFIC_EVENTS),
        "blocked": latest_end(blue, ("BlockTraffic",)),
        "original_done": latest_end(blue, ("AfterBlockTraffic",)),
        "complete_time": info["completeTime"],
        "original_group_gone": gone,
    }
    marks = {name: when - sent for name, when in marks.items()}
    phases = {
        "provisioning": marks["first_replacement_event"],
        "installing": marks["installed"] - marks["first_replacement_event"],
        "rerouting": marks["rerouted"] - marks["installed"],
        "blocking": marks["blocked"] - marks["rerouted"],
        "waiting_and_termination": marks["original_group_gone"] - marks["blocked"],
    }

    # Rerouting, HalfAtATime: two batches of two, each its hosts' first traffic event
    # start to their last end; and the gaps before each batch (from the last install).
    windows = sorted((earliest_start([t], TRAFFIC_EVENTS), latest_end([t], TRAFFIC_EVENTS)) for t in green)
    size = INSTANCES // 2
    batches = [(windows[i][0], max(end for _, end in windows[i:i + size])) for i in range(0, len(windows), size)]
    previous_ends = [marks["installed"] + sent] + [end for _, end in batches[:-1]]

    old, new = f"v{int(version[1:]) - 1}", version
    failures = [outcome[1] for _, _, outcome in samples if not outcome[0]]
    errors = {}
    for failure in failures:
        errors[failure] = errors.get(failure, 0) + 1
    answers = {}
    for _, _, (ok, body) in samples:
        if ok:
            answers[body] = answers.get(body, 0) + 1
    first_allow, blocked = marks["first_allow_traffic"] + sent, marks["blocked"] + sent
    return {
        "deployment_id": deployment_id,
        "original_group": original_groups[0],
        "replacement_group": progress.get("replacementAutoScalingGroup"),
        "marks_s": marks,
        "phases_s": phases,
        "reroute_batches": [end - start for start, end in batches],
        "reroute_gaps": [start - before for (start, _), before in zip(batches, previous_ends)],
        "allow_traffic": [s for s in (event_span(t, "AllowTraffic") for t in green) if s is not None],
        "block_traffic": [s for s in (event_span(t, "BlockTraffic") for t in blue) if s is not None],
        "events": {f"{t['instanceLabel']} {t['targetId']}": [
            (e["lifecycleEventName"], e.get("startTime"), e.get("endTime")) for e in t["lifecycleEvents"]]
            for t in green + blue},
        "requests": len(samples),
        "failed": len(failures),
        "errors": errors,
        "answers": answers,
        # Which version answered when: only the old one before the first AllowTraffic
        # started, only the new one once the last BlockTraffic ended.
        "new_before_first_allow": sum(1 for s, _, (ok, body) in samples if ok and body == new and s < first_allow),
        "old_after_blocked": sum(1 for s, _, (ok, body) in samples if ok and body == old and s > blocked),
        "largest_latency": max(latency for _, latency, _ in samples),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", default="release", help="the cargo profile whose binaries to run")
    parser.add_argument("--agent")
    parser.add_argument("--local")
    parser.add_argument("--tick-ms", type=int, help="gantry-local's schedule tick (default: its own, 1000)")
    parser.add_argument("--output", default=os.path.join(ROOT, "bench", "results", "bluegreen.json"))
    args = parser.parse_args()
    agent = args.agent or os.path.join(TARGET, args.profile, "gantry-agent")
    local_binary = args.local or os.path.join(TARGET, args.profile, "gantry-local")
    local_args = ("--tick-ms", str(args.tick_ms)) if args.tick_ms else ()

    work = tempfile.mkdtemp(prefix="gantry-bench-bluegreen-")
    fleet_dir = os.path.join(work, "fleet")
    os.makedirs(fleet_dir)
    processes = []
    try:
        setup = set_up(work, fleet_dir, agent, local_binary, processes, local_args)
        autoscaling = setup.session.client("autoscaling", endpoint_url=setup.moto_endpoint)
        api(setup.endpoint, "UpdateDeploymentGroup", {
            "applicationName": "shop", "currentDeploymentGroupName": "web",
            "deploymentStyle": {"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
            "blueGreenDeploymentConfiguration": BLUE_GREEN})

        runs = []
        for run in range(args.runs):
            version = f"v{run + 2}"
            push(setup.s3, version, setup.port)
            # Each deployment starts as the first did: four agents, four healthy targets.
            wait_for_agents(fleet_dir)
            wait_for(lambda: healthy_count(setup.elb, setup.target_group) == INSTANCES, 60, "four healthy targets",
                     interval=0.1)
            measured = measure(setup, autoscaling, version)
            runs.append(measured)
            m, p = measured["marks_s"], measured["phases_s"]
            print(f"run {run + 1} {measured['deployment_id']} ({measured['original_group']} -> "
                  f"{measured['replacement_group']}): rerouted {m['rerouted']:.2f} s, blocked {m['blocked']:.2f} s, "
                  f"original group gone {m['original_group_gone']:.2f} s; "
                  + ", ".join(f"{name} {p[name]:.2f}" for name in PHASES)
                  + f" s; create call {m['create_call_returned']:.2f} s, createTime {m['create_time']:.2f} s, "
                  f"completeTime {m['complete_time']:.2f} s; reroute batches "
                  f"{', '.join(f'{b:.2f}' for b in measured['reroute_batches'])} s, gaps "
                  f"{', '.join(f'{g:.2f}' for g in measured['reroute_gaps'])} s; AllowTraffic "
                  f"{', '.join(f'{a:.2f}' for a in measured['allow_traffic'])} s, BlockTraffic "
                  f"{', '.join(f'{b:.2f}' for b in measured['block_traffic'])} s; {measured['requests']} requests, "
                  f"{measured['failed']} failed {measured['errors'] or ''}, answers {measured['answers']}, "
                  f"largest latency {measured['largest_latency'] * 1000:.1f} ms", flush=True)

        def stats(values):
            return {"median": median(values), "max": max(values), "min": min(values)}

        summary = {
            "marks_s": {name: stats([r["marks_s"][name] for r in runs]) for name in runs[0]["marks_s"]},
            "phases_s": {name: stats([r["phases_s"][name] for r in runs]) for name in PHASES},
            "reroute_batch_s": stats([b for r in runs for b in r["reroute_batches"]]),
            "reroute_gap_s": stats([g for r in runs for g in r["reroute_gaps"]]),
            "allow_traffic_s": stats([a for r in runs for a in r["allow_traffic"]]),
            "block_traffic_s": stats([b for r in runs for b in r["block_traffic"]]),
            "requests": stats([r["requests"] for r in runs]),
            "failed": stats([r["failed"] for r in runs]),
            "failed_total": sum(r["failed"] for r in runs),
            "new_before_first_allow_total": sum(r["new_before_first_allow"] for r in runs),
            "old_after_blocked_total": sum(r["old_after_blocked"] for r in runs),
            "largest_latency_ms": stats([r["largest_latency"] * 1000 for r in runs]),
        }
        results = {"runs": args.runs, "profile": args.profile, "tick_ms": args.tick_ms, "summary": summary,
                   "deployments": runs}
        os.makedirs(os.path.dirname(args.output), exist_ok=True)
        with open(args.output, "w") as file:
            json.dump(results, file, indent=2)
        print(f"\nwrote {args.output}\n")

        marks, phases = summary["marks_s"], summary["phases_s"]

        def row(label, s, unit=" s", digits=2):
            return f"| {label} | {s['median']:.{digits}f}{unit} ({s['max']:.{digits}f}{unit}) |"

        print(f"| blue/green deployment of 4 (medians of {args.runs} runs, max) | |")
        print("|---|---|")
        print(row("CreateDeployment sent to traffic rerouted (last AfterAllowTraffic end)", marks["rerouted"]))
        print(row("to the original fleet blocked (last BlockTraffic end)", marks["blocked"]))
        print(row("to completeTime", marks["complete_time"]))
        print(row("to the original Auto Scaling group gone", marks["original_group_gone"]))
        for name in PHASES:
            print(row(name, phases[name]))
        print(row("of provisioning: CreateDeployment call (copies the group)", marks["create_call_returned"]))
        print(row("of provisioning: createTime", marks["create_time"]))
        print(row("of rerouting: a batch of 2, first traffic event start to last end", summary["reroute_batch_s"]))
        print(row("of rerouting: gap before a batch (last install or last batch end to its start)",
                  summary["reroute_gap_s"]))
        print(row("AllowTraffic per host", summary["allow_traffic_s"]))
        print(row("BlockTraffic per host", summary["block_traffic_s"]))
        print(row("client loop: requests", summary["requests"], "", 0))
        print(f"| failed requests (all runs) | {summary['failed_total']} |")
        print(row("largest latency", summary["largest_latency_ms"], " ms", 1))
    finally:
        # The fleet runner first (it stops the agents), what outlived it, then the rest.
        stop(processes[2:])
        kill_recorded(fleet_dir)
        stop(list(reversed(processes[:2])))
        print(f"logs: {work}")


if __name__ == "__main__":
    main()
