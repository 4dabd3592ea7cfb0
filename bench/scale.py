#!/usr/bin/env python3
"""Control-plane cost as the fleet grows, with simulated hosts.

Starts moto (through tests/moto_server.py), a counting HTTP proxy in front of it, and a
release-built gantry-local whose AWS_ENDPOINT_URL is the proxy, so that every AWS request
the control plane makes is counted, with the bytes of its DynamoDB write requests. The
harness plays the hosts against moto directly: it registers N on-premises instances,
deploys AllAtOnce, takes each host's command from its queue, and hands each host's 14
reports (two messages of up to ten, as the agent batches them) to batch-advance through
the Lambda Invoke API in SQS events of ten messages, as the SQS event source does (its
own polling is AWS's, not the control plane's, so it is not counted).

Measures per fleet size (medians over --runs):
- create-deployment to Succeeded, the harness's work included;
- AWS requests the control plane makes per host, by operation;
- bytes of DynamoDB write requests per host (PutItem, UpdateItem, TransactWriteItems,
  BatchWriteItem bodies: the items written, in DynamoDB's JSON).

- each function's invocations as gantry-local ran them under template.yaml's limits:
  count, p50, p99 and maximum time against its timeout, and how many timed out.

Writes bench/results/scale-<sizes>.json and prints Markdown tables. Usage:
    .venv/bin/python bench/scale.py [--hosts 100,1000,5000] [--runs N]
"""

import argparse
import collections
import concurrent.futures
import json
import os
import statistics
import tempfile
import threading
import time
import urllib.request

import boto3

from control_plane import start_proxy
from harness import ROOT, api, host_role, invoke, release_binary, session_arn, start_local, start_moto, stop, tgz, wait_for

EVENTS = ["ApplicationStop", "DownloadBundle", "BeforeInstall", "Install", "AfterInstall", "ApplicationStart", "ValidateService"]
WRITES = {"PutItem", "UpdateItem", "TransactWriteItems", "BatchWriteItem", "DeleteItem"}


class Counter:
    """Requests by operation, and the bytes of DynamoDB write requests (for
    control_plane.start_proxy, which calls add with each request's body)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = collections.Counter()
        self.write_bytes = 0

    def add(self, name, body=b""):
        with self.lock:
            self.requests[name] += 1
            if name in WRITES:
                self.write_bytes += len(body)

    def take(self):
        with self.lock:
            taken = (self.requests, self.write_bytes)
            self.requests, self.write_bytes = collections.Counter(), 0
        return taken


def report_messages(deployment_id, host):
    """The host's 14 reports as the agent sends them: arrays of up to ten per message."""
    clock = int(time.time() * 1000)
    reports = []
    for event in EVENTS:
        base = {"schemaVersion": 1, "deploymentId": deployment_id, "instanceId": host, "lifecycleEvent": event, "startTime": clock}
        reports.append({**base, "status": "InProgress"})
        reports.append({**base, "status": "Succeeded", "endTime": clock + 1, "diagnostics": {"errorCode": "Success"}})
        clock += 2
    return [json.dumps(reports[i:i + 10]) for i in range(0, len(reports), 10)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", default="100,1000,5000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=5,
                        help="batch-advance invocations at once (Lambda's SQS event source starts with five)")
    parser.add_argument("--local", default=release_binary("gantry-local"))
    parser.add_argument("--tick-ms", type=int, default=1000,
                        help="gantry-local's schedule; a long one keeps the tick from running a "
                             "dispatch again while moto is still slowly sending it (it waits 30 s)")
    args = parser.parse_args()
    sizes = [int(size) for size in args.hosts.split(",")]

    work = tempfile.mkdtemp(prefix="gantry-bench-scale-")
    results = {}
    for size in sizes:
        moto, moto_endpoint = start_moto(work)
        counter = Counter()
        proxy = start_proxy(int(moto_endpoint.rsplit(":", 1)[1]), counter)
        proxy_endpoint = f"http://127.0.0.1:{proxy.server_address[1]}"
        local, endpoint = start_local(args.local, proxy_endpoint, os.path.join(work, f"local-{size}.log"),
                                      ["--tick-ms", str(args.tick_ms), "--host-start-timeout-seconds", "3600"])
        try:
            results[size] = run_size(size, args.runs, args.workers, endpoint, moto_endpoint, counter)
            # Each function's invocation times as gantry-local ran them, under the
            # template's limits (all runs of this size, set-up included).
            with urllib.request.urlopen(f"{endpoint}/gantry-local/invocations", timeout=10) as response:
                results[size]["invocations"] = json.load(response)
        finally:
            stop([local])
            moto.kill()
            moto.wait()
            proxy.shutdown()
        print(f"{size} hosts: {json.dumps(results[size])}", flush=True)

    out = os.path.join(ROOT, "bench", "results", f"scale-{'-'.join(map(str, sizes))}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
    print("| hosts (AllAtOnce, simulated) | batch-advance workers | create to Succeeded (median) | control-plane AWS requests per host | DynamoDB write request bytes per host |")
    print("|---|---|---|---|---|")
    for size, r in results.items():
        print(f"| {size} | {r['workers']} | {r['create_to_succeeded_s_median']:.1f} s | {r['requests_per_host_median']:.2f} | {r['dynamodb_write_bytes_per_host_median']:.0f} |")
    for size, r in results.items():
        print(f"{size} hosts, requests per host by operation: {r['requests_by_operation_per_host']}")
    print()
    print("| hosts | function | invocations | p50 | p99 | max | timeout | timed out |")
    print("|---|---|---|---|---|---|---|---|")
    for size, r in results.items():
        for function, f in sorted(r.get("invocations", {}).get("functions", {}).items()):
            print(f"| {size} | {function} | {f['count']} | {f['p50Ms']:.0f} ms | {f['p99Ms']:.0f} ms | "
                  f"{f['maxMs']:.0f} ms | {f['timeoutMs'] / 1000:.0f} s | {f['timeouts']} |")


def run_size(size, runs, workers, endpoint, moto_endpoint, counter):
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    s3 = session.client("s3", endpoint_url=moto_endpoint)
    sqs = session.client("sqs", endpoint_url=moto_endpoint)
    dynamodb = session.client("dynamodb", endpoint_url=moto_endpoint)
    s3.put_object(Bucket="gantry-revisions", Key="bench/noop.tgz", Body=tgz([("appspec.yml", b"version: 0.0\nos: linux\n")]))
    api(endpoint, "CreateApplication", {"applicationName": "bench"})
    # Every simulated host is a session of one role; its reports carry that SenderId.
    role_id = host_role(moto_endpoint)
    hosts = [f"host-{i:05d}" for i in range(size)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda host: api(endpoint, "RegisterOnPremisesInstance", {"instanceName": host, "iamSessionArn": session_arn(host)}), hosts))
    def tag(zone, members):
        api(endpoint, "AddTagsToOnPremisesInstances", {"instanceNames": members, "tags": [
            {"Key": "bench", "Value": "yes"}, {"Key": "gantry:availability-zone", "Value": f"zone-{zone}"}]})

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        calls = [pool.submit(tag, zone, hosts[zone::2][start:start + 100])
                 for zone in range(2) for start in range(0, len(hosts[zone::2]), 100)]
        for call in calls:
            call.result()
    api(endpoint, "CreateDeploymentGroup", {"applicationName": "bench", "deploymentGroupName": "all",
        "deploymentConfigName": "CodeDeployDefault.AllAtOnce",
        "onPremisesInstanceTagFilters": [{"Key": "bench", "Value": "yes", "Type": "KEY_AND_VALUE"}]})

    def status(deployment_id):
        # Straight from moto, so the harness's polling is not counted.
        item = dynamodb.get_item(TableName="gantry", Key={"pk": {"S": f"DEPLOYMENT#{deployment_id}"}, "sk": {"S": "STATE"}})
        return item.get("Item", {}).get("status", {}).get("S")

    queues = {}
    totals, per_host, bytes_per_host, by_operation = [], [], [], collections.Counter()
    for run in range(runs):
        counter.take()
        started = time.monotonic()
        # Dispatching thousands of commands through moto takes minutes (each host's first
        # command also creates its queue); real SQS takes seconds.
        deployment_id = invoke(endpoint, "create-deployment", {"applicationName": "bench", "deploymentGroupName": "all",
            "revision": {"revisionType": "S3", "s3Location": {"bucket": "gantry-revisions", "key": "bench/noop.tgz", "bundleType": "tgz"}}},
            timeout=1800)["deploymentId"]
        if not queues:
            queues.update({host: sqs.get_queue_url(QueueName=f"gantry-commands-{host}")["QueueUrl"] for host in hosts})

        def take(host):
            got = []
            deadline = time.monotonic() + 120
            while not got and time.monotonic() < deadline:
                got = sqs.receive_message(QueueUrl=queues[host], MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                raise SystemExit(f"no command for {host}")
            for message in got:
                sqs.delete_message(QueueUrl=queues[host], ReceiptHandle=message["ReceiptHandle"])
            return [(f"{role_id}:{host}", body) for body in report_messages(deployment_id, host)]

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            messages = [body for bodies in pool.map(take, hosts) for body in bodies]
            events = []
            for start in range(0, len(messages), 10):
                records = [{"messageId": f"r{run}-{start + i}", "receiptHandle": "h", "body": body,
                            "attributes": {"SenderId": sender}, "eventSource": "aws:sqs"}
                           for i, (sender, body) in enumerate(messages[start:start + 10])]
                events.append({"Records": records})

            def deliver(event):
                failed = invoke(endpoint, "batch-advance", event, timeout=600)["batchItemFailures"]
                if failed:
                    raise SystemExit(f"reports refused: {failed}")

        # Lambda runs several batches of one queue at once; so does the harness.
        with concurrent.futures.ThreadPoolExecutor(workers) as deliveries:
            list(deliveries.map(deliver, events))
        wait_for(lambda: status(deployment_id) == "Succeeded", 1800, "Succeeded", interval=0.05)
        totals.append(time.monotonic() - started)
        time.sleep(1.5)  # let the deployment's last effects (the lock, the group) go out
        requests, write_bytes = counter.take()
        per_host.append(sum(requests.values()) / size)
        bytes_per_host.append(write_bytes / size)
        by_operation.update(requests)
    return {
        "hosts": size,
        "runs": runs,
        "create_to_succeeded_s_median": statistics.median(totals),
        "requests_per_host_median": statistics.median(per_host),
        "dynamodb_write_bytes_per_host_median": statistics.median(bytes_per_host),
        "workers": workers,
        "requests_by_operation_per_host": {k: round(v / (runs * size), 3) for k, v in sorted(by_operation.items())},
    }


if __name__ == "__main__":
    main()
