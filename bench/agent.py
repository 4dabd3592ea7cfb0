#!/usr/bin/env python3
"""Agent footprint and overhead, measured against a local moto server.

Starts moto_server and one gantry-agent, then measures:
- idle RSS, and AWS requests per idle minute (counted in moto's request log);
- RSS while a hook runs;
- the agent's overhead per no-op event: from the first event's start to the last event's
  end, as the agent reports them, divided by the number of events (no scripts run), and
  the wall time from sending the command to reading the last report.

Writes bench/results/agent.json (or --output) and prints a Markdown table. Usage:
    .venv/bin/python bench/agent.py [--runs N] [--idle-seconds S] [--agent PATH] [--output FILE]
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3

from harness import free_port, wait_for, tgz, rss_kib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVENTS = 7  # ApplicationStop .. ValidateService


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--idle-seconds", type=int, default=60)
    parser.add_argument("--agent", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "gantry-agent"))
    parser.add_argument("--output", default=os.path.join(ROOT, "bench/results/agent.json"))
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="gantry-bench-")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto_log = open(os.path.join(work, "moto.log"), "w+")
    moto = subprocess.Popen([os.path.join(ROOT, ".venv/bin/moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=moto_log, stderr=subprocess.STDOUT)
    agent = None
    try:
        def moto_up():
            try:
                urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
                return True
            except Exception:
                return False

        wait_for(moto_up, 60, "moto")
        env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_REGION="us-east-1", AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
        s3 = session.client("s3", endpoint_url=endpoint)
        sqs = session.client("sqs", endpoint_url=endpoint)
        s3.create_bucket(Bucket="bundles")
        commands = sqs.create_queue(QueueName="gantry-cmd-bench-1")["QueueUrl"]
        reports = sqs.create_queue(QueueName="gantry-reports")["QueueUrl"]
        noop = tgz([("appspec.yml", b"version: 0.0\nos: linux\n", 0o644)])
        noop_etag = s3.put_object(Bucket="bundles", Key="noop.tgz", Body=noop)["ETag"]
        hook = tgz([
            ("appspec.yml", b"version: 0.0\nos: linux\nhooks:\n  ApplicationStart:\n    - location: run.sh\n", 0o644),
            ("run.sh", b"#!/bin/sh\nsleep 2\n", 0o755),
        ])
        hook_etag = s3.put_object(Bucket="bundles", Key="hook.tgz", Body=hook)["ETag"]

        config = os.path.join(work, "agent.yml")
        with open(config, "w") as f:
            f.write(f"identity:\n  on_premises_name: bench-1\nregion: us-east-1\nqueue_prefix: gantry-cmd-\nreports_queue: gantry-reports\nroot_dir: {work}/root\nlog_dir: {work}/logs\ninstall_root: {work}/fs\npoll_wait_seconds: 20\n")
        agent = subprocess.Popen([args.agent, "--config", config], env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "agent.stderr"), "w"))

        # Idle: let it settle, then count its requests in moto's log over the window.
        time.sleep(3)
        moto_log.flush()
        before = sum(1 for _ in open(moto_log.name))
        idle_rss = []
        idle_anon = []
        idle_file = []
        window_start = time.monotonic()
        while time.monotonic() - window_start < args.idle_seconds:
            idle_rss.append(rss_kib(agent.pid))
            idle_anon.append(rss_kib(agent.pid, "RssAnon"))
            idle_file.append(rss_kib(agent.pid, "RssFile"))
            time.sleep(1)
        moto_log.flush()
        requests = sum(1 for _ in open(moto_log.name)) - before
        requests_per_minute = requests * 60.0 / args.idle_seconds

        def command(deployment_id, key, etag):
            return json.dumps({
                "schemaVersion": 1, "deploymentId": deployment_id, "deploymentGroupId": "g-bench",
                "deploymentGroupName": "bench", "applicationName": "bench", "instanceId": "bench-1",
                "revision": {"revisionType": "S3", "s3Location": {"bucket": "bundles", "key": key, "bundleType": "tgz", "eTag": etag}},
                "lifecycleEvents": ["ApplicationStop", "DownloadBundle", "BeforeInstall", "Install", "AfterInstall", "ApplicationStart", "ValidateService"],
                "fileExistsBehavior": "DISALLOW", "ignoreApplicationStopFailures": False, "creator": "user",
            })

        def run_one(deployment_id, key, etag, sample_rss=None):
            sent = time.monotonic()
            sqs.send_message(QueueUrl=commands, MessageBody=command(deployment_id, key, etag))
            finals = []
            while True:
                if sample_rss is not None:
                    sample_rss.append(rss_kib(agent.pid))
                got = sqs.receive_message(QueueUrl=reports, MaxNumberOfMessages=10, WaitTimeSeconds=0 if sample_rss is not None else 1)
                for message in got.get("Messages", []):
                    sqs.delete_message(QueueUrl=reports, ReceiptHandle=message["ReceiptHandle"])
                    body = json.loads(message["Body"])  # one report, or a list the agent had ready at once
                    for report in body if isinstance(body, list) else [body]:
                        if report["deploymentId"] == deployment_id and report["status"] != "InProgress":
                            finals.append(report)
                if len(finals) == EVENTS:
                    return time.monotonic() - sent, finals
                if any(r["status"] == "Failed" for r in finals):
                    raise SystemExit(f"{deployment_id} failed: {finals}")
                if time.monotonic() - sent > 60:
                    raise SystemExit(f"{deployment_id}: no final reports")
                if sample_rss is not None:
                    time.sleep(0.1)

        per_event_ms, wall_ms = [], []
        for run in range(args.runs):
            wall, finals = run_one(f"d-BENCH{run:04d}", "noop.tgz", noop_etag)
            span = max(r["endTime"] for r in finals) - min(r["startTime"] for r in finals)
            per_event_ms.append(span / EVENTS)
            wall_ms.append(wall * 1000)

        hook_rss = []
        run_one("d-BENCHHOOK", "hook.tgz", hook_etag, sample_rss=hook_rss)

        results = {
            "runs": args.runs,
            "idle_rss_kib_median": statistics.median(idle_rss),
            "idle_rss_anon_kib_median": statistics.median(idle_anon),
            "idle_rss_file_kib_median": statistics.median(idle_file),
            "idle_requests_per_minute": round(requests_per_minute, 2),
            "hook_rss_kib_max": max(hook_rss),
            "noop_event_overhead_ms_median": round(statistics.median(per_event_ms), 2),
            "noop_event_overhead_ms_max": round(max(per_event_ms), 2),
            "command_to_last_report_ms_median": round(statistics.median(wall_ms), 1),
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(results, f, indent=2)
            f.write("\n")
        print("| measure | value |\n|---|---|")
        for key, value in results.items():
            print(f"| {key} | {value} |")
    finally:
        for process in (agent, moto):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()


if __name__ == "__main__":
    sys.exit(main())
