#!/usr/bin/env python3
"""Whole-fleet deployment times with real agents, measured against a local moto server.

Starts moto (through tests/moto_server.py), a release-built gantry-local, and N
release-built gantry-agent processes, each an on-premises host with its own root_dir,
install_root and log_dir. Deploys a no-op revision (an appspec and nothing else) and
measures, over several runs (medians):
- create-deployment to Succeeded on 1 host, and on 10 and 100 hosts with AllAtOnce,
  by the deployment's own createTime and completeTime, with where the time goes:
  create to the first host's first event, the hosts' events, and the last event's end to
  Succeeded;
- OneAtATime over 10 hosts: the per-batch gap, from one host's last event ending to the
  next host's first event starting, by the hosts' reports;
- the agents' RSS, idle after the deployments.

Control-plane AWS requests per host are measured by bench/control_plane.py.

Writes bench/results/fleet.json and prints a Markdown table. Usage:
    .venv/bin/python bench/fleet.py [--runs N] [--sizes 1,10,100]
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import boto3

from harness import (ROOT, SDK_ENV, api, host_user, invoke, release_binary, rss_kib, start_local,
                     start_moto, stop, tgz, wait_for)

TERMINAL = {"Succeeded", "Failed", "Stopped"}


def start_agent(binary, work, host, aws_endpoint, keys):
    directory = os.path.join(work, "hosts", host)
    for sub in ("root", "fs", "logs"):
        os.makedirs(os.path.join(directory, sub), exist_ok=True)
    config = os.path.join(directory, "agent.yml")
    with open(config, "w") as file:
        file.write(
            f"identity:\n  on_premises_name: {host}\nregion: us-east-1\n"
            "queue_prefix: gantry-commands-\nreports_queue: gantry-reports\n"
            f"root_dir: {directory}/root\nlog_dir: {directory}/logs\ninstall_root: {directory}/fs\n"
            "poll_wait_seconds: 20\n")
    env = dict(os.environ, AWS_ENDPOINT_URL=aws_endpoint, **{**SDK_ENV, **keys})
    return subprocess.Popen([binary, "--config", config], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(directory, "agent.stderr"), "w"))


def targets(endpoint, deployment_id):
    ids, token = [], None
    while True:
        listed = api(endpoint, "ListDeploymentTargets", {"deploymentId": deployment_id, **({"nextToken": token} if token else {})})
        ids.extend(listed["targetIds"])
        token = listed.get("nextToken")
        if not token:
            break
    found = []
    for start in range(0, len(ids), 25):  # BatchGetDeploymentTargets takes 25 at a time
        got = api(endpoint, "BatchGetDeploymentTargets", {"deploymentId": deployment_id, "targetIds": ids[start:start + 25]})
        found.extend(target["instanceTarget"] for target in got["deploymentTargets"])
    return found


def window(target):
    events = target["lifecycleEvents"]
    return (min(e["startTime"] for e in events if e.get("startTime") is not None),
            max(e["endTime"] for e in events if e.get("endTime") is not None))


def deploy(endpoint, group, config):
    created = invoke(endpoint, "create-deployment", {
        "applicationName": "bench", "deploymentGroupName": group, "deploymentConfigName": config,
        "revision": {"revisionType": "S3", "s3Location": {"bucket": "gantry-revisions", "key": "bench/noop.tgz", "bundleType": "tgz"}},
    })
    deployment_id = created["deploymentId"]

    def ended():
        info = api(endpoint, "GetDeployment", {"deploymentId": deployment_id})["deploymentInfo"]
        return info if info["status"] in TERMINAL else None

    # Times come from the deployment itself (createTime, completeTime), so polling slowly
    # costs no precision, and leaves moto to the control plane.
    info = wait_for(ended, 600, f"deployment {deployment_id}", interval=0.2)
    if info["status"] != "Succeeded":
        raise SystemExit(f"deployment {deployment_id} ended {info['status']}: {info.get('errorInformation')}")
    return info, targets(endpoint, deployment_id)


def stages(info, hosts):
    """Seconds: total, create to first event, first event to last event end, last end to done."""
    windows = [window(target) for target in hosts]
    first_start = min(start for start, _ in windows)
    last_end = max(end for _, end in windows)
    return {
        "total": info["completeTime"] - info["createTime"],
        "create_to_first_event": first_start - info["createTime"],
        "host_events": last_end - first_start,
        "last_event_to_succeeded": info["completeTime"] - last_end,
    }


def gaps(hosts):
    """Seconds between one host's last event ending and the next host's first starting."""
    windows = sorted(window(target) for target in hosts)
    return [later[0] - earlier[1] for earlier, later in zip(windows, windows[1:])]


def control_plane_load(log_path, offset):
    """From gantry-local's log after `offset`: report messages received, the reports in
    them, and state writes they caused (one per deployment per received batch)."""
    messages = reports = writes = 0
    with open(log_path) as log:
        log.seek(offset)
        for line in log:
            if "reports received" not in line:
                continue
            fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
            messages += int(fields["messages"])
            reports += int(fields["reports"])
            writes += int(fields["deployments"])
    return messages, reports, writes


def median_ms(values):
    return round(statistics.median(values) * 1000, 1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", default="1,10,100")
    parser.add_argument("--agent", default=release_binary("gantry-agent"))
    parser.add_argument("--local", default=release_binary("gantry-local"))
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]

    work = tempfile.mkdtemp(prefix="gantry-bench-fleet-")
    processes = []
    try:
        moto, moto_endpoint = start_moto(work)
        processes.append(moto)
        local_log = os.path.join(work, "local.log")
        local, endpoint = start_local(args.local, moto_endpoint, local_log, ["--tick-ms", "1000"])
        processes.append(local)

        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
        s3 = session.client("s3", endpoint_url=moto_endpoint)
        s3.put_object(Bucket="gantry-revisions", Key="bench/noop.tgz", Body=tgz([("appspec.yml", b"version: 0.0\nos: linux\n")]))
        api(endpoint, "CreateApplication", {"applicationName": "bench"})

        hosts = [f"host-{i:03d}" for i in range(max(sizes + [10]))]
        keys = {}
        for index, host in enumerate(hosts):
            arn, keys[host] = host_user(moto_endpoint, host)
            api(endpoint, "RegisterOnPremisesInstance", {"instanceName": host, "iamUserArn": arn})
            tags = [{"Key": f"size-{size}", "Value": "yes"} for size in sizes + [10] if index < size]
            tags.append({"Key": "gantry:availability-zone", "Value": f"zone-{index % 2}"})
            api(endpoint, "AddTagsToOnPremisesInstances", {"instanceNames": [host], "tags": tags})

        scenarios = [(f"{size} hosts, AllAtOnce", size, f"size-{size}", "CodeDeployDefault.AllAtOnce") for size in sizes]
        scenarios.append(("10 hosts, OneAtATime", 10, "size-10-one", "CodeDeployDefault.OneAtATime"))
        for _, _, group, config in scenarios:
            tag = group.removesuffix("-one")
            api(endpoint, "CreateDeploymentGroup", {
                "applicationName": "bench", "deploymentGroupName": group, "deploymentConfigName": config,
                "onPremisesInstanceTagFilters": [{"Key": tag, "Value": "yes", "Type": "KEY_AND_VALUE"}],
            })

        results = {"runs": args.runs, "scenarios": {}}
        rss = []
        for name, size, group, config in scenarios:
            # Only this scenario's hosts run: idle agents long-polling moto are not free.
            agents = [start_agent(args.agent, work, host, moto_endpoint, keys[host]) for host in hosts[:size]]
            try:
                deploy(endpoint, group, config)  # warm-up: the agents' first command pays for connections
                measured = []
                batch_gaps = []
                load = []
                for _ in range(args.runs):
                    offset = os.path.getsize(local_log)
                    info, got = deploy(endpoint, group, config)
                    measured.append(stages(info, got))
                    load.append(control_plane_load(local_log, offset))
                    if config.endswith("OneAtATime"):
                        batch_gaps.extend(gaps(got))
                if size == max(sizes):
                    time.sleep(5)  # back in their long polls
                    rss = [rss_kib(agent.pid) / 1024 for agent in agents]
            finally:
                stop(agents)
            summary = {key: median_ms([m[key] for m in measured]) for key in measured[0]}
            summary["total_max"] = round(max(m["total"] for m in measured) * 1000, 1)
            messages, reports, writes = (sum(run[i] for run in load) for i in range(3))
            summary["report_messages_per_host"] = round(messages / (size * args.runs), 2)
            summary["reports_per_message"] = round(reports / max(messages, 1), 2)
            summary["report_writes_per_host"] = round(writes / (size * args.runs), 2)
            if batch_gaps:
                summary["batch_gap"] = median_ms(batch_gaps)
                summary["batch_gap_max"] = round(max(batch_gaps) * 1000, 1)
            results["scenarios"][name] = summary
            print(f"{name}: {summary}", flush=True)

        results["agent_idle_rss_mib"] = {"median": round(statistics.median(rss), 1), "max": round(max(rss), 1)}
        print(f"agent idle RSS: {results['agent_idle_rss_mib']}")

        out = os.path.join(ROOT, "bench", "results", "fleet.json")
        with open(out, "w") as file:
            json.dump(results, file, indent=2)
        print(f"\nwrote {out}\n")
        print("| scenario | create to Succeeded (median / max) | to first event | host events | last event to Succeeded | batch gap (median / max) | report messages per host | reports per message | state writes per host |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name, s in results["scenarios"].items():
            gap = f"{s['batch_gap']} / {s['batch_gap_max']} ms" if "batch_gap" in s else "-"
            print(f"| {name} | {s['total']} / {s['total_max']} ms | {s['create_to_first_event']} ms | "
                  f"{s['host_events']} ms | {s['last_event_to_succeeded']} ms | {gap} | "
                  f"{s['report_messages_per_host']} | {s['reports_per_message']} | {s['report_writes_per_host']} |")
    finally:
        stop(list(reversed(processes)))


if __name__ == "__main__":
    main()
