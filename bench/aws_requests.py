#!/usr/bin/env python3
"""Every AWS request one in-place deployment makes, by caller and operation (issue 31).

Starts moto (tests/moto_server.py), a counting proxy in front of it, a release-built
gantry-local and N release-built gantry-agent processes, all of them reaching AWS
through the proxy. Deploys a revision of four short hooks and twenty files to N hosts
with OneAtATime, HalfAtATime and AllAtOnce, after a warm-up deployment, and counts
every request of the deployment, per host: from create-deployment until it has ended,
released its group's lock and left the tick's schedule (for that last part, after the
end, only the requests that name the deployment; earlier deployments leave the schedule
before the count starts):

- by caller:
  - agent: signed with a host's own access key, or a presigned S3 link (the bundle);
  - event source: the control plane's SQS ReceiveMessage, DeleteMessage(Batch) and
    ChangeMessageVisibility(Batch) on its own queues (the reports and lifecycle
    queues). In AWS, Lambda's event source mapping makes these, not Gantry, so they
    are left out of the control plane's figure;
  - control plane: every other request signed with gantry-local's key (the functions,
    the tick included);
- by operation, within each caller;
- what AWS bills, estimated from the bodies: DynamoDB write units (1 per KB written
  per item, twice in a transaction) and read units (1 per 4 KB read, strongly
  consistent), and SQS requests in 64 KB chunks.

Writes bench/results/aws-requests.json and prints Markdown tables. Usage:
    .venv/bin/python bench/aws_requests.py [--sizes 10,100] [--configs OneAtATime,HalfAtATime,AllAtOnce]
"""

import argparse
import collections
import json
import math
import os
import re
import statistics
import tempfile
import threading

import boto3

import peer_ansible
from control_plane import start_proxy
from fleet import start_agent
from harness import ROOT, api, host_user, invoke, release_binary, start_local, start_moto, stop, tgz, wait_for

CONFIGS = ("OneAtATime", "HalfAtATime", "AllAtOnce")
EVENT_SOURCE = {"ReceiveMessage", "DeleteMessage", "DeleteMessageBatch", "ChangeMessageVisibility",
                "ChangeMessageVisibilityBatch"}
CONTROL_QUEUES = ("gantry-reports", "gantry-lifecycle")
CREDENTIAL = re.compile(r"Credential=([A-Z0-9]+)/")


def revision():
    """Four short hooks and twenty files, as issue 31 names the revision."""
    files = [(f"site/page-{i:02d}.html", f"<p>page {i}</p>\n".encode()) for i in range(20)]
    hooks = ("BeforeInstall", "AfterInstall", "ApplicationStart", "ValidateService")
    appspec = "version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: /srv/bench\nhooks:\n"
    for hook in hooks:
        appspec += f"  {hook}:\n    - location: scripts/{hook}.sh\n      timeout: 30\n"
        files.append((f"scripts/{hook}.sh", b"#!/bin/sh\ntrue\n"))
    return tgz([("appspec.yml", appspec.encode()), *files])


def deploy(endpoint, dynamodb, group, config):
    """One deployment, waited for in the table directly (through neither the proxy nor
    gantry-local, so the wait costs nothing counted); its deploymentInfo."""
    created = invoke(endpoint, "create-deployment", {
        "applicationName": "bench", "deploymentGroupName": group, "deploymentConfigName": config,
        "revision": {"revisionType": "S3", "s3Location": {"bucket": "gantry-revisions", "key": "bench/requests.tgz", "bundleType": "tgz"}},
        # Each configuration is a group of its own on the same hosts: the files another
        # group installed are overwritten, not refused.
        "fileExistsBehavior": "OVERWRITE",
    })
    deployment_id = created["deploymentId"]

    def ended():
        item = dynamodb.get_item(TableName="gantry", ConsistentRead=True,
                                 Key={"pk": {"S": f"DEPLOYMENT#{deployment_id}"}, "sk": {"S": "STATE"}}).get("Item", {})
        if item.get("status", {}).get("S") not in ("Succeeded", "Failed", "Stopped"):
            return False
        # The end's effects follow its write: the group's lock is released last, and the
        # next deployment to the group needs it.
        lock = dynamodb.get_item(TableName="gantry", ConsistentRead=True,
                                 Key={"pk": {"S": "GROUP#bench"}, "sk": {"S": group}}).get("Item", {})
        return lock.get("activeDeploymentId", {}).get("S") != deployment_id

    wait_for(ended, 900, f"deployment {deployment_id}", interval=0.2)
    return deployment_id


def on_schedule(dynamodb):
    """Whether any deployment is on the tick's schedule (the table's `active` index)."""
    found = dynamodb.query(TableName="gantry", IndexName="active", Limit=1,
                           KeyConditionExpression="activeKey = :active",
                           ExpressionAttributeValues={":active": {"S": "ACTIVE"}})
    return bool(found.get("Items"))


def agent_span(endpoint, dynamodb, host, runs):
    """The agent's span on one host, DownloadBundle's start to ValidateService's end as
    the host reported them, over `runs` deployments after a warm-up; and each event's
    duration. Milliseconds, medians and maxima."""
    deploy(endpoint, dynamodb, "span", "CodeDeployDefault.AllAtOnce")  # warm-up
    spans, events = [], collections.defaultdict(list)
    for _ in range(runs):
        deployment_id = deploy(endpoint, dynamodb, "span", "CodeDeployDefault.AllAtOnce")
        target = api(endpoint, "GetDeploymentTarget", {"deploymentId": deployment_id, "targetId": host})
        lifecycle = {event["lifecycleEventName"]: event
                     for event in target["deploymentTarget"]["instanceTarget"]["lifecycleEvents"]}
        if any(event["status"] != "Succeeded" for event in lifecycle.values()):
            raise SystemExit(f"{deployment_id}: {lifecycle}")
        spans.append(1000 * (lifecycle["ValidateService"]["endTime"] - lifecycle["DownloadBundle"]["startTime"]))
        for name, event in lifecycle.items():
            events[name].append(1000 * (event["endTime"] - event["startTime"]))
    return {
        "runs": runs,
        "span_ms_median": round(statistics.median(spans), 1),
        "span_ms_max": round(max(spans), 1),
        "event_ms_median": {name: round(statistics.median(values), 1) for name, values in events.items()},
    }


def compare(before, after):
    """Prints requests per host by caller and operation, before and after, for each
    deployment both results measured."""
    names = [name for name in after if name in before and "requests_per_host_by_operation" in after[name]]
    operations = sorted({operation for name in names for results in (before, after)
                         for operation in results[name]["requests_per_host_by_operation"]})
    print("| caller, operation | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for operation in operations + ["all"]:
        cells = []
        for name in names:
            if operation == "all":
                was, now = before[name]["requests_per_host"], after[name]["requests_per_host"]
            else:
                was = before[name]["requests_per_host_by_operation"].get(operation, 0)
                now = after[name]["requests_per_host_by_operation"].get(operation, 0)
            cells.append(f"{was:g} → {now:g}")
        label = "**all**" if operation == "all" else operation
        print(f"| {label} | " + " | ".join(cells) + " |")


def item_bytes(item):
    """An item's size as DynamoDB counts it, near enough: names and values' text."""
    return len(json.dumps(item, separators=(",", ":")).encode())


def write_units(name, body):
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return 0
    if name == "TransactWriteItems":
        return sum(2 * max(1, math.ceil(item_bytes(entry) / 1024)) for entry in request.get("TransactItems", []))
    if name == "BatchWriteItem":
        return sum(max(1, math.ceil(item_bytes(write) / 1024))
                   for writes in request.get("RequestItems", {}).values() for write in writes)
    if name in ("PutItem", "UpdateItem", "DeleteItem"):
        return max(1, math.ceil(item_bytes(request.get("Item") or request) / 1024))
    return 0


def read_units(name, response_body):
    if name not in ("GetItem", "Query", "BatchGetItem", "Scan", "TransactGetItems"):
        return 0
    return max(1, math.ceil(len(response_body or b"") / 4096))


class Counter:
    """Requests by (caller, operation), with billed units; the caller is read off each
    request's signature (see start_proxy's `headers`)."""

    def __init__(self, agent_keys):
        self.lock = threading.Lock()
        self.agent_keys = set(agent_keys)
        self.reset()

    def reset(self):
        with self.lock:
            self.requests = collections.Counter()
            self.units = collections.Counter()
            # When set, only requests whose body names it count (a deployment's id).
            self.only = None

    def caller(self, name, body, headers):
        authorization = (headers or {}).get("Authorization", "") or ""
        key = CREDENTIAL.search(authorization)
        if key and key.group(1) in self.agent_keys:
            return "agent"
        # A presigned link (its signature in the URL, none in the headers): the control
        # plane signs it, a host uses it to download its bundle.
        if name.startswith("S3 ") and not authorization:
            return "agent"
        text = (body or b"").decode(errors="replace")
        if name in EVENT_SOURCE and any(queue in text for queue in CONTROL_QUEUES):
            return "event source"
        return "control plane"

    def add(self, name, body=b"", status=None, response_body=b"", headers=None):
        caller = self.caller(name, body, headers)
        with self.lock:
            if self.only is not None and self.only.encode() not in (body or b""):
                return
            self.requests[(caller, name)] += 1
            self.units[(caller, "DynamoDB write units")] += write_units(name, body)
            self.units[(caller, "DynamoDB read units")] += read_units(name, response_body)
            if name in ("SendMessage", "SendMessageBatch", "ReceiveMessage", "DeleteMessage", "DeleteMessageBatch"):
                self.units[(caller, "SQS billed requests")] += max(1, math.ceil(len(body or b"") / 65536))

    def take(self):
        with self.lock:
            taken = (self.requests, self.units)
            self.requests, self.units = collections.Counter(), collections.Counter()
        return taken


def per_host(counter, size):
    return {f"{caller} {name}": round(count / size, 2) for (caller, name), count in sorted(counter.items())}


def self_test():
    """The caller and unit accounting, on synthetic requests."""
    counter = Counter(["AKIAHOST0001"])
    signed = lambda key: {"Authorization": f"AWS4-HMAC-SHA256 Credential={key}/20261207/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0"}
    receive_reports = json.dumps({"QueueUrl": "http://127.0.0.1:1/123456789012/gantry-reports"}).encode()
    receive_commands = json.dumps({"QueueUrl": "http://127.0.0.1:1/123456789012/gantry-commands-host-001"}).encode()
    counter.add("ReceiveMessage", receive_commands, 200, b"{}", headers=signed("AKIAHOST0001"))
    counter.add("SendMessage", receive_reports, 200, b"{}", headers=signed("AKIAHOST0001"))
    counter.add("ReceiveMessage", receive_reports, 200, b"{}", headers=signed("testing"))
    counter.add("DeleteMessageBatch", receive_reports, 200, b"{}", headers=signed("testing"))
    big = {"TransactItems": [{"Put": {"Item": {"pk": {"S": "x" * 1500}}}}, {"Update": {"Key": {"pk": {"S": "y"}}}}]}
    counter.add("TransactWriteItems", json.dumps(big).encode(), 200, b"{}", headers=signed("testing"))
    counter.add("Query", b"{}", 200, b"x" * 5000, headers=signed("testing"))
    counter.add("S3 GET", b"", 206, b"bundle", headers={})
    requests, units = counter.take()
    assert requests == {("agent", "ReceiveMessage"): 1, ("agent", "SendMessage"): 1, ("agent", "S3 GET"): 1,
                        ("event source", "ReceiveMessage"): 1, ("event source", "DeleteMessageBatch"): 1,
                        ("control plane", "TransactWriteItems"): 1, ("control plane", "Query"): 1}, requests
    assert units[("control plane", "DynamoDB write units")] == 2 * 2 + 2 * 1, units
    assert units[("control plane", "DynamoDB read units")] == 2, units
    assert units[("agent", "SQS billed requests")] == 2, units
    print("self-test passed")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--self-test", action="store_true", help="check the accounting on synthetic requests, no builds needed")
    parser.add_argument("--sizes", default="10,100")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--span-runs", type=int, default=20, help="deployments to one host for the agent's span (0: none)")
    parser.add_argument("--ansible-bin", default=os.path.join(ROOT, ".venv-ansible", "bin"),
                        help="the peer baseline's ansible-playbook (`make ansible-venv`); --no-peer leaves it out")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--compare", metavar="BEFORE_JSON",
                        help="print the per-operation table of an earlier results file against bench/results/aws-requests.json, and exit")
    parser.add_argument("--agent", default=release_binary("gantry-agent"))
    parser.add_argument("--local", default=release_binary("gantry-local"))
    args = parser.parse_args()
    if args.self_test:
        return self_test()
    if args.compare:
        with open(args.compare) as before, open(os.path.join(ROOT, "bench", "results", "aws-requests.json")) as after:
            return compare(json.load(before), json.load(after))
    if not args.no_peer and not os.path.exists(os.path.join(args.ansible_bin, "ansible-playbook")):
        raise SystemExit(f"no ansible-playbook in {args.ansible_bin}: run `make ansible-venv`, or pass --no-peer")
    sizes = [int(size) for size in args.sizes.split(",") if size]
    configs = args.configs.split(",")

    work = tempfile.mkdtemp(prefix="gantry-bench-requests-")
    processes = []
    results = {}
    try:
        moto, moto_endpoint = start_moto(work)
        processes.append(moto)
        hosts = [f"host-{i:03d}" for i in range(max(sizes, default=1))]
        keys = {host: host_user(moto_endpoint, host) for host in hosts}
        counter = Counter(key["AWS_ACCESS_KEY_ID"] for _, key in keys.values())
        proxy = start_proxy(int(moto_endpoint.rsplit(":", 1)[1]), counter)
        proxy_endpoint = f"http://127.0.0.1:{proxy.server_address[1]}"
        local, endpoint = start_local(args.local, proxy_endpoint, os.path.join(work, "local.log"), ["--tick-ms", "1000"])
        processes.append(local)

        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
        session.client("s3", endpoint_url=moto_endpoint).put_object(
            Bucket="gantry-revisions", Key="bench/requests.tgz", Body=revision())
        dynamodb = session.client("dynamodb", endpoint_url=moto_endpoint)
        api(endpoint, "CreateApplication", {"applicationName": "bench"})
        for index, host in enumerate(hosts):
            api(endpoint, "RegisterOnPremisesInstance", {"instanceName": host, "iamUserArn": keys[host][0]})
            tags = [{"Key": f"size-{size}", "Value": "yes"} for size in sizes if index < size]
            if index == 0:
                tags.append({"Key": "span", "Value": "yes"})
            api(endpoint, "AddTagsToOnPremisesInstances", {"instanceNames": [host], "tags": tags})
        for size in sizes:
            for config in configs:
                api(endpoint, "CreateDeploymentGroup", {
                    "applicationName": "bench", "deploymentGroupName": f"size-{size}-{config}",
                    "deploymentConfigName": f"CodeDeployDefault.{config}",
                    "onPremisesInstanceTagFilters": [{"Key": f"size-{size}", "Value": "yes", "Type": "KEY_AND_VALUE"}],
                })

        api(endpoint, "CreateDeploymentGroup", {
            "applicationName": "bench", "deploymentGroupName": "span",
            "deploymentConfigName": "CodeDeployDefault.AllAtOnce",
            "onPremisesInstanceTagFilters": [{"Key": "span", "Value": "yes", "Type": "KEY_AND_VALUE"}],
        })
        if args.span_runs:
            # Straight to moto: the span is not counted, and the proxy's latency (a Python
            # thread a request) would weigh on whatever the agent waits for.
            agents = [start_agent(args.agent, work, hosts[0], moto_endpoint, keys[hosts[0]][1])]
            try:
                results["agent span, 1 host"] = agent_span(endpoint, dynamodb, hosts[0], args.span_runs)
                print(f"agent span, 1 host: {json.dumps(results['agent span, 1 host'])}", flush=True)
            finally:
                stop(agents)

        for size in sizes:
            agents = [start_agent(args.agent, work, host, proxy_endpoint, keys[host][1]) for host in hosts[:size]]
            try:
                for config in configs:
                    group = f"size-{size}-{config}"
                    deploy(endpoint, dynamodb, group, f"CodeDeployDefault.{config}")  # warm-up
                    # Earlier deployments leave the schedule on a tick about 30 s after
                    # their last write; their last look must not land in this window.
                    wait_for(lambda: not on_schedule(dynamodb), 300, "earlier deployments to leave the schedule", interval=0.5)
                    counter.take()
                    deployment_id = deploy(endpoint, dynamodb, group, f"CodeDeployDefault.{config}")
                    requests, units = counter.take()
                    # And this one's last look is its own: counted, the requests that
                    # name it, but not what runs meanwhile for nobody (the tick's look
                    # at the schedule, the idle long polls).
                    counter.only = deployment_id
                    wait_for(lambda: not on_schedule(dynamodb), 300, f"{deployment_id} to leave the schedule", interval=0.5)
                    tail_requests, tail_units = counter.take()
                    counter.only = None
                    requests.update(tail_requests)
                    units.update(tail_units)
                    info = api(endpoint, "GetDeployment", {"deploymentId": deployment_id})["deploymentInfo"]
                    if info["status"] != "Succeeded":
                        raise SystemExit(f"{deployment_id} ended {info['status']}: {info.get('errorInformation')}")
                    callers = collections.Counter()
                    for (caller, _), count in requests.items():
                        callers[caller] += count
                    row = {
                        "seconds": round(info["completeTime"] - info["createTime"], 2),
                        "requests_per_host_by_caller": {caller: round(count / size, 2) for caller, count in sorted(callers.items())},
                        "requests_per_host": round(sum(callers.values()) / size, 2),
                        "requests_per_host_without_event_source": round((sum(callers.values()) - callers["event source"]) / size, 2),
                        "requests_per_host_by_operation": per_host(requests, size),
                        "billed_per_host": per_host(units, size),
                    }
                    results[f"{config}, {size} hosts"] = row
                    print(f"{config}, {size} hosts: {json.dumps(row)}", flush=True)
            finally:
                stop(agents)
            if not args.no_peer:
                # The peer baseline, side by side: the same revision, hosts and batches,
                # with the agents stopped so that ansible has the cores to itself, as the
                # agents had them. One warm-up per size (the cheapest configuration).
                bundle_url = session.client("s3", endpoint_url=moto_endpoint).generate_presigned_url(
                    "get_object", ExpiresIn=3600, Params={"Bucket": "gantry-revisions", "Key": "bench/requests.tgz"})
                peer_ansible.deploy(args.ansible_bin, work, size, "AllAtOnce", bundle_url)
                for config in configs:
                    peer = peer_ansible.deploy(args.ansible_bin, work, size, config, bundle_url)
                    row = results[f"{config}, {size} hosts"]
                    row["ansible_seconds"] = round(peer["seconds"], 2)
                    row["ansible_over_gantry"] = round(peer["seconds"] / row["seconds"], 1)
                    print(f"{config}, {size} hosts, ansible-core: {peer['seconds']:.2f} s, "
                          f"{row['ansible_over_gantry']} times Gantry's {row['seconds']} s", flush=True)
    finally:
        stop(list(reversed(processes)))

    out = os.path.join(ROOT, "bench", "results", "aws-requests.json")
    with open(out, "w") as file:
        json.dump(results, file, indent=2)
    print(f"\nwrote {out}\n")
    print("| deployment | create to Succeeded | ansible-core (ratio) | requests per host: all | agent | control plane | event source (Lambda's, in AWS) | all but the event source |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in results.items():
        if "requests_per_host_by_caller" not in row:
            continue
        by = row["requests_per_host_by_caller"]
        peer = f"{row['ansible_seconds']} s ({row['ansible_over_gantry']}x)" if "ansible_seconds" in row else "-"
        print(f"| {name} | {row['seconds']} s | {peer} | {row['requests_per_host']} | {by.get('agent', 0)} | "
              f"{by.get('control plane', 0)} | {by.get('event source', 0)} | {row['requests_per_host_without_event_source']} |")


if __name__ == "__main__":
    main()
