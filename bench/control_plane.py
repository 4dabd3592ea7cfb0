#!/usr/bin/env python3
"""Control-plane cost and latency, measured against a local moto server.

Starts moto_server, a counting HTTP proxy in front of it, and a release-built
gantry-local whose AWS_ENDPOINT_URL is the proxy, so that every AWS request the control
plane makes (and only those) is counted. The harness plays the hosts itself, talking to
moto directly: it takes each command from a host's queue and sends the 14 reports the
agent sends for an in-place deployment with no scripts.

Measures, per configuration and over several runs (medians):
- AWS requests the control plane makes per host per deployment, by operation
  (create-deployment, report processing, ticks and the reports poller included);
- the per-batch gap of OneAtATime: from sending a host's last report to the
  reports queue until the next host's command is readable on its queue;
- create-deployment to Succeeded.

Writes bench/results/control_plane.json and prints a Markdown table. Usage:
    .venv/bin/python bench/control_plane.py [--runs N] [--hosts N]
"""

import argparse
import collections
import gzip
import http.client
import http.server
import json
import os
import re
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import boto3

from harness import api, free_port, host_user, invoke, tgz, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVENTS = ["ApplicationStop", "DownloadBundle", "BeforeInstall", "Install", "AfterInstall", "ApplicationStart", "ValidateService"]


class Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = collections.Counter()

    def add(self, name, body=b"", status=None, response_body=b"", headers=None):
        with self.lock:
            self.counts[name] += 1

    def take(self):
        with self.lock:
            counts, self.counts = self.counts, collections.Counter()
        return counts


def operation_name(method, path, headers, body):
    target = headers.get("X-Amz-Target")
    if target:
        return target.split(".")[-1]
    if body and b"Action=" in body:
        action = urllib.parse.parse_qs(body.decode(errors="replace")).get("Action", ["?"])[0]
        return action
    return f"S3 {method}"


def decoded(response, data):
    """The response's body as the service wrote it (moto does not compress, but an SDK may ask)."""
    if response.getheader("Content-Encoding", "").lower() == "gzip" and data:
        try:
            return gzip.decompress(data)
        except OSError:
            return data
    return data


def start_proxy(upstream_port, counter):
    """An HTTP proxy to 127.0.0.1:upstream_port that calls
    counter.add(operation, request_body, status, response_body, headers=request_headers)
    for each request."""
    class Proxy(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def forward(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            name = operation_name(self.command, self.path, self.headers, body)
            upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
            try:
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
            except Exception:
                # The control plane made the request even though moto did not answer it.
                counter.add(name, body, headers=self.headers)
                raise
            # Counted with the answer, so a counter can tell a lost race from a write.
            counter.add(name, body, response.status, decoded(response, data), headers=self.headers)
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            # A HEAD's answer has no body but the object's length (a bundle is pinned by
            # HeadObject, then read in ranges of that length).
            length = response.getheader("Content-Length", "0") if self.command == "HEAD" else len(data)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            upstream.close()

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = forward

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def reports(deployment_id, host):
    clock = int(time.time() * 1000)
    bodies = []
    for event in EVENTS:
        base = {"schemaVersion": 1, "deploymentId": deployment_id, "instanceId": host, "lifecycleEvent": event, "startTime": clock}
        bodies.append(json.dumps({**base, "status": "InProgress"}))
        bodies.append(json.dumps({**base, "status": "Succeeded", "endTime": clock + 1, "diagnostics": {"errorCode": "Success"}}))
        clock += 2
    return bodies


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--direct", action="store_true",
                        help="gantry-local talks to moto directly: true latencies, no request counts")
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    parser.add_argument("--local", default=os.path.join(target, "release", "gantry-local"))
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="gantry-bench-cp-")
    moto_port = free_port()
    moto = subprocess.Popen(
        [os.path.join(ROOT, ".venv/bin/python"), os.path.join(ROOT, "tests/moto_server.py"), "-p", str(moto_port)],
        stdout=open(os.path.join(work, "moto.log"), "w"),
        stderr=subprocess.STDOUT,
    )
    counter = Counter()
    proxy = start_proxy(moto_port, counter)
    proxy_endpoint = f"http://127.0.0.1:{proxy.server_address[1]}"
    local = None
    try:
        moto_endpoint = f"http://127.0.0.1:{moto_port}"

        def moto_up():
            try:
                urllib.request.urlopen(moto_endpoint + "/moto-api/", timeout=1)
                return True
            except Exception:
                return False

        wait_for(moto_up, 30, "moto")
        env = dict(os.environ, AWS_ENDPOINT_URL=moto_endpoint if args.direct else proxy_endpoint, AWS_REGION="us-east-1",
                   AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", RUST_LOG="info")
        local_log = os.path.join(work, "local.log")
        local = subprocess.Popen([args.local, "--port", "0", "--tick-ms", "1000"], env=env,
                                 stdout=subprocess.PIPE, stderr=open(local_log, "w"), text=True)

        def dispatch_times(start_offset):
            # gantry-local logs each state change with dispatched=... elapsed_ms=...
            with open(local_log) as log:
                log.seek(start_offset)
                lines = log.read().splitlines()
            # Report batch received -> state written (written_ms) -> commands sent
            # (after_write_ms on the "batch dispatched" line just before "advanced").
            times = []
            after_write = None
            for line in lines:
                if "batch dispatched" in line:
                    match = re.search(r"after_write_ms=([0-9.]+)", line)
                    after_write = float(match.group(1)) if match else None
                elif "advanced" in line and "dispatched=true" in line and after_write is not None:
                    match = re.search(r"written_ms=([0-9.]+)", line)
                    if match:
                        times.append(float(match.group(1)) + after_write)
                    after_write = None
            return times
        line = local.stdout.readline().strip()
        endpoint = line.removeprefix("gantry-local listening on ")
        if not endpoint.startswith("http"):
            raise SystemExit(f"gantry-local did not start: {line!r}")

        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
        s3 = session.client("s3", endpoint_url=moto_endpoint)
        sqs = session.client("sqs", endpoint_url=moto_endpoint)
        s3.put_object(Bucket="gantry-revisions", Key="bench/noop.tgz", Body=tgz([("appspec.yml", b"version: 0.0\nos: linux\n")]))
        api(endpoint, "CreateApplication", {"applicationName": "bench"})
        hosts = [f"host-{i:03d}" for i in range(args.hosts)]
        senders = {}
        for index, host in enumerate(hosts):
            # Each host sends its reports with its own keys, as its agent would.
            arn, keys = host_user(moto_endpoint, host)
            senders[host] = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1",
                                         aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
                                         aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"])
            api(endpoint, "RegisterOnPremisesInstance", {"instanceName": host, "iamUserArn": arn})
            api(endpoint, "AddTagsToOnPremisesInstances", {"instanceNames": [host], "tags": [
                {"Key": "bench", "Value": "yes"}, {"Key": "gantry:availability-zone", "Value": f"zone-{index % 2}"}]})
        queues = {host: sqs.get_queue_url(QueueName=f"gantry-commands-{host}")["QueueUrl"] for host in hosts}
        reports_url = sqs.get_queue_url(QueueName="gantry-reports")["QueueUrl"]

        def take_command(host, timeout=30):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                got = sqs.receive_message(QueueUrl=queues[host], MaxNumberOfMessages=1, WaitTimeSeconds=1).get("Messages", [])
                if got:
                    sqs.delete_message(QueueUrl=queues[host], ReceiptHandle=got[0]["ReceiptHandle"])
                    return json.loads(got[0]["Body"]), time.monotonic()
            raise SystemExit(f"no command for {host}")

        def send_reports(deployment_id, host):
            bodies = reports(deployment_id, host)
            for start in range(0, len(bodies), 10):
                senders[host].send_message_batch(QueueUrl=reports_url, Entries=[
                    {"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies[start:start + 10])])
            return time.monotonic()

        dynamodb = session.client("dynamodb", endpoint_url=moto_endpoint)

        def status(deployment_id):
            # Read straight from moto, so the harness's polling is not counted.
            item = dynamodb.get_item(TableName="gantry", Key={"pk": {"S": f"DEPLOYMENT#{deployment_id}"}, "sk": {"S": "STATE"}})
            return item.get("Item", {}).get("status", {}).get("S")

        results = {}
        for config in ["CodeDeployDefault.OneAtATime", "CodeDeployDefault.AllAtOnce"]:
            group = config.split(".")[1]
            api(endpoint, "CreateDeploymentGroup", {"applicationName": "bench", "deploymentGroupName": group,
                "deploymentConfigName": config, "onPremisesInstanceTagFilters": [{"Key": "bench", "Value": "yes", "Type": "KEY_AND_VALUE"}]})
            per_host, gaps, totals, by_operation, internal = [], [], [], collections.Counter(), []
            for _ in range(args.runs):
                counter.take()
                log_offset = os.path.getsize(local_log)
                started = time.monotonic()
                deployment_id = invoke(endpoint, "create-deployment", {"applicationName": "bench", "deploymentGroupName": group,
                    "revision": {"revisionType": "S3", "s3Location": {"bucket": "gantry-revisions", "key": "bench/noop.tgz", "bundleType": "tgz"}}})["deploymentId"]
                if config.endswith("OneAtATime"):
                    pending = set(hosts)
                    last_sent = None
                    while pending:
                        # The next command goes to one host; find which.
                        found = None
                        deadline = time.monotonic() + 30
                        while found is None and time.monotonic() < deadline:
                            for host in list(pending):
                                got = sqs.receive_message(QueueUrl=queues[host], MaxNumberOfMessages=1).get("Messages", [])
                                if got:
                                    arrived = time.monotonic()
                                    sqs.delete_message(QueueUrl=queues[host], ReceiptHandle=got[0]["ReceiptHandle"])
                                    found = host
                                    break
                        if found is None:
                            raise SystemExit("no next command")
                        if last_sent is not None:
                            gaps.append((arrived - last_sent) * 1000)
                        pending.discard(found)
                        last_sent = send_reports(deployment_id, found)
                else:
                    for host in hosts:
                        take_command(host)
                    for host in hosts:
                        send_reports(deployment_id, host)
                wait_for(lambda: status(deployment_id) == "Succeeded", 60, "Succeeded")
                totals.append((time.monotonic() - started) * 1000)
                # Ticks and the poller keep running; count only what the deployment caused:
                # stop counting once it has succeeded and its effects are out.
                time.sleep(0.5)
                counts = counter.take()
                ours = sum(counts.values())
                if config.endswith("OneAtATime"):
                    internal.extend(dispatch_times(log_offset))
                per_host.append(ours / len(hosts))
                by_operation.update(counts)
            results[config] = {
                "hosts": len(hosts),
                "runs": args.runs,
                "requests_per_host_median": statistics.median(per_host),
                "requests_by_operation_per_host": {k: round(v / (args.runs * len(hosts)), 2) for k, v in sorted(by_operation.items())},
                "batch_gap_ms_median": statistics.median(gaps) if gaps else None,
                "advance_with_dispatch_ms_median": statistics.median(internal) if internal else None,
                "advance_with_dispatch_ms_max": max(internal) if internal else None,
                "batch_gap_ms_max": max(gaps) if gaps else None,
                "create_to_succeeded_ms_median": statistics.median(totals),
            }
        name = "control_plane_direct.json" if args.direct else "control_plane.json"
        out = os.path.join(ROOT, "bench", "results", name)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w") as f:
            json.dump(results, f, indent=2)
        print("| configuration | hosts | requests per host (median) | report applied to next batch sent, median / max | harness: last report sent to next command read, median / max | create to Succeeded (median) |")
        print("|---|---|---|---|---|---|")
        for config, r in results.items():
            gap = f"{r['batch_gap_ms_median']:.0f} / {r['batch_gap_ms_max']:.0f} ms" if r["batch_gap_ms_median"] else "-"
            inside = f"{r['advance_with_dispatch_ms_median']:.1f} / {r['advance_with_dispatch_ms_max']:.1f} ms" if r["advance_with_dispatch_ms_median"] else "-"
            print(f"| {config} | {r['hosts']} | {r['requests_per_host_median']:.1f} | {inside} | {gap} | {r['create_to_succeeded_ms_median']:.0f} ms |")
        for config, r in results.items():
            print(f"{config} requests per host by operation: {r['requests_by_operation_per_host']}")
    finally:
        if local is not None:
            local.terminate()
            local.wait(timeout=30)
        moto.kill()
        moto.wait()
        proxy.shutdown()


if __name__ == "__main__":
    main()
