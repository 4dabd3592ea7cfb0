#!/usr/bin/env python3
"""Control-plane cost as the fleet grows, with simulated hosts.

Starts moto (through tests/moto_server.py), a counting HTTP proxy in front of it, and a
release-built gantry-local whose AWS_ENDPOINT_URL is the proxy, so that every AWS request
the control plane makes is counted, with the bytes of its DynamoDB write requests and the
answers that refused a write. The harness plays the hosts against moto directly: it
registers N on-premises instances, deploys, takes each host's command from its queue, and
hands each host's 14 reports (two messages of up to ten, as the agent batches them) to
batch-advance through the Lambda Invoke API in SQS events of up to ten messages, as the
SQS event source does (its own polling is AWS's, not the control plane's, so it is not
counted). AllAtOnce takes every command, then delivers every event, --workers at once;
OneAtATime finds the host the next command went to, delivers its reports, and repeats
(it scans the hosts' queues each time: keep it to small fleets).

Each (configuration, fleet size, workers) runs on a fresh moto and gantry-local, and
measures (medians over --runs):
- create-deployment to Succeeded, the harness's work included, and the reports phase
  (first report handed to batch-advance to Succeeded);
- AWS requests the control plane makes per host, by operation;
- bytes of DynamoDB write requests per host (PutItem, UpdateItem, TransactWriteItems,
  BatchWriteItem, DeleteItem bodies: the items written, in DynamoDB's JSON);
- lost races per host by the item that lost: a cancelled TransactWriteItems's
  ConditionalCheckFailed and TransactionConflict reasons, each mapped to its
  TransactItems entry's sort key, and a single write's ConditionalCheckFailedException,
  to its own: summary (STATE), tally (STATE#COUNT#nn), host (TARGET#...), outbox
  (STATE#OUTBOX#...) or other. moto serializes DynamoDB requests (tests/moto_server.py),
  so it never answers TransactionConflict; real DynamoDB does;
- each function's invocations as gantry-local ran them under template.yaml's limits:
  count, p50, p99 and maximum time against its timeout, and how many timed out.

Writes bench/results/scale-<sizes>[-workers-<counts>][-<configs>].json, keyed by
configuration, then hosts, then workers, and prints one Markdown table (batch-advance's
times in it; every function's in the JSON). Usage:
    .venv/bin/python bench/scale.py [--hosts 100,1000,5000] [--workers 1,5,50]
        [--config AllAtOnce,OneAtATime] [--runs N]
    .venv/bin/python bench/scale.py --self-test   # the parsing, on synthetic bodies
"""

import argparse
import collections
import concurrent.futures
import gzip
import http.server
import itertools
import json
import os
import statistics
import tempfile
import threading
import time
import urllib.error
import urllib.request

import boto3

from control_plane import start_proxy
from harness import ROOT, api, host_role, invoke, release_binary, session_arn, start_local, start_moto, stop, tgz, wait_for

EVENTS = ["ApplicationStop", "DownloadBundle", "BeforeInstall", "Install", "AfterInstall", "ApplicationStart", "ValidateService"]
WRITES = {"PutItem", "UpdateItem", "TransactWriteItems", "BatchWriteItem", "DeleteItem"}


CONFIGS = ("AllAtOnce", "OneAtATime")
# Where a lost race happened: the deployment's summary, a tally shard, a host record, the
# decision claim (a recount that stepped aside for another), an outbox entry, or any
# other item.
KINDS = ("summary", "tally", "host", "claim", "outbox", "other")
# The cancellation codes that mean another writer got there first.
LOST = ("ConditionalCheckFailed", "TransactionConflict")


def item_kind(sk):
    if sk == "STATE":
        return "summary"
    if sk.startswith("STATE#COUNT#"):
        return "tally"
    if sk.startswith("STATE#OUTBOX#"):
        return "outbox"
    if sk.startswith("TARGET#"):
        return "host"
    if sk == "DECISION_CLAIM":
        return "claim"
    return "other"


def written_sk(write):
    """The sort key a write names: a TransactItems entry ({"Put": {"Item": ...}},
    {"Update": {"Key": ...}}, ...) or a PutItem/UpdateItem/DeleteItem request."""
    for action in ("Put", "Update", "Delete", "ConditionCheck"):
        if action in write:
            write = write[action]
            break
    key = write.get("Key") or write.get("Item") or {}
    return key.get("sk", {}).get("S", "")


def refused_writes(name, body, status, response_body):
    """(kind, code) of each item whose write a DynamoDB answer refused: a cancelled
    transaction's non-None CancellationReasons, aligned with its TransactItems, or a
    single write's ConditionalCheckFailedException."""
    if status != 400 or name not in WRITES:
        return []
    try:
        request, error = json.loads(body), json.loads(response_body)
    except (ValueError, UnicodeDecodeError):
        return []
    error_type = error.get("__type", "")
    if name == "TransactWriteItems":
        if not error_type.endswith("TransactionCanceledException"):
            return []
        items = request.get("TransactItems", [])
        return [(item_kind(written_sk(items[i]) if i < len(items) else ""), reason.get("Code"))
                for i, reason in enumerate(error.get("CancellationReasons", []))
                if reason.get("Code", "None") != "None"]
    if error_type.endswith("ConditionalCheckFailedException"):
        return [(item_kind(written_sk(request)), "ConditionalCheckFailed")]
    return []


class Counter:
    """Requests by operation, the bytes of DynamoDB write requests, and the writes lost
    races refused, by (item kind, code) (for control_plane.start_proxy, which calls add
    with each request's body and its answer)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = collections.Counter()
        self.write_bytes = 0
        self.refused = collections.Counter()

    def add(self, name, body=b"", status=None, response_body=b"", headers=None):
        refused = refused_writes(name, body, status, response_body)
        with self.lock:
            self.requests[name] += 1
            if name in WRITES:
                self.write_bytes += len(body)
            self.refused.update(refused)

    def take(self):
        with self.lock:
            taken = (self.requests, self.write_bytes, self.refused)
            self.requests, self.write_bytes, self.refused = collections.Counter(), 0, collections.Counter()
        return taken


def lost_by_kind(refused):
    return {kind: sum(refused[(kind, code)] for code in LOST) for kind in KINDS}


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
    parser.add_argument("--workers", default="5",
                        help="batch-advance invocations at once, a comma list, each run on its own "
                             "(Lambda's SQS event source starts with five)")
    parser.add_argument("--config", default="AllAtOnce",
                        help=f"deployment configurations, a comma list of {', '.join(CONFIGS)}; "
                             "OneAtATime takes one host at a time, so keep it to small fleets")
    parser.add_argument("--local", default=release_binary("gantry-local"))
    parser.add_argument("--tick-ms", type=int, default=1000,
                        help="gantry-local's schedule; a long one keeps the tick from running a "
                             "dispatch again while moto is still slowly sending it (it waits 30 s)")
    parser.add_argument("--self-test", action="store_true",
                        help="check the lost-race parsing and the proxy on synthetic bodies, no builds needed")
    args = parser.parse_args()
    if args.self_test:
        self_test()
        return
    sizes = [int(size) for size in args.hosts.split(",")]
    worker_counts = [int(workers) for workers in args.workers.split(",")]
    configs = args.config.split(",")
    for config in configs:
        if config not in CONFIGS:
            parser.error(f"--config {config}: not one of {', '.join(CONFIGS)}")

    work = tempfile.mkdtemp(prefix="gantry-bench-scale-")
    # {config: {hosts: {workers: result}}}
    results = {}
    for config in configs:
        for size in sizes:
            for workers in worker_counts:
                # A fresh moto and gantry-local for each: no row pays for another's
                # tables, queues or warm-up.
                moto, moto_endpoint = start_moto(work)
                counter = Counter()
                proxy = start_proxy(int(moto_endpoint.rsplit(":", 1)[1]), counter)
                proxy_endpoint = f"http://127.0.0.1:{proxy.server_address[1]}"
                local, endpoint = start_local(args.local, proxy_endpoint,
                                              os.path.join(work, f"local-{config}-{size}-{workers}.log"),
                                              ["--tick-ms", str(args.tick_ms), "--host-start-timeout-seconds", "3600"])
                try:
                    result = run_fleet(size, args.runs, workers, config, endpoint, moto_endpoint, counter)
                    # Each function's invocation times as gantry-local ran them, under the
                    # template's limits (all runs of this row, set-up included).
                    with urllib.request.urlopen(f"{endpoint}/gantry-local/invocations", timeout=10) as response:
                        result["invocations"] = json.load(response)
                finally:
                    stop([local])
                    moto.kill()
                    moto.wait()
                    proxy.shutdown()
                results.setdefault(config, {}).setdefault(str(size), {})[str(workers)] = result
                print(f"{config}, {size} hosts, {workers} workers: {json.dumps(result)}", flush=True)

    name = f"scale-{'-'.join(map(str, sizes))}"
    if worker_counts != [5]:
        name += f"-workers-{'-'.join(map(str, worker_counts))}"
    if configs != ["AllAtOnce"]:
        name += f"-{'-'.join(configs)}"
    out = os.path.join(ROOT, "bench", "results", f"{name}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
    rows = [r for by_size in results.values() for by_workers in by_size.values() for r in by_workers.values()]
    print()
    print(markdown_table(rows))
    print()
    for r in rows:
        print(f"{r['config']}, {r['hosts']} hosts, {r['workers']} workers: requests per host by operation "
              f"{r['requests_by_operation_per_host']}; lost races per host by item and code {r['lost_races_by_code_per_host']}")


def markdown_table(rows):
    lines = ["| configuration | hosts (simulated) | batch-advance workers | create to Succeeded (median) | "
             "reports phase (median) | control-plane AWS requests per host | DynamoDB write request bytes per host | "
             "lost races per host: summary / tally / host | batch-advance p50 / p99 / max (timeout) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lost = r["lost_races_per_host_median"]
        races = f"{lost['summary']:.3f} / {lost['tally']:.3f} / {lost['host']:.3f}"
        if lost.get("claim"):
            races += f" (+{lost['claim']:.3f} decision claims)"
        elsewhere = lost["outbox"] + lost["other"]
        if elsewhere:
            races += f" (+{elsewhere:.3f} outbox and other)"
        advance = r.get("invocations", {}).get("functions", {}).get("batch-advance")
        if advance:
            times = (f"{advance['p50Ms']:.0f} / {advance['p99Ms']:.0f} / {advance['maxMs']:.0f} ms "
                     f"({advance['timeoutMs'] / 1000:.0f} s)")
            if advance["timeouts"]:
                times += f", {advance['timeouts']} of {advance['count']} timed out"
        else:
            times = "-"
        lines.append(f"| {r['config']} | {r['hosts']} | {r['workers']} | {r['create_to_succeeded_s_median']:.1f} s | "
                     f"{r['reports_phase_s_median']:.1f} s | {r['requests_per_host_median']:.2f} | "
                     f"{r['dynamodb_write_bytes_per_host_median']:.0f} | {races} | {times} |")
    return "\n".join(lines)


def run_fleet(size, runs, workers, config, endpoint, moto_endpoint, counter):
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
    api(endpoint, "CreateDeploymentGroup", {"applicationName": "bench", "deploymentGroupName": config,
        "deploymentConfigName": f"CodeDeployDefault.{config}",
        "onPremisesInstanceTagFilters": [{"Key": "bench", "Value": "yes", "Type": "KEY_AND_VALUE"}]})

    def status(deployment_id):
        # Straight from moto, so the harness's polling is not counted.
        item = dynamodb.get_item(TableName="gantry", Key={"pk": {"S": f"DEPLOYMENT#{deployment_id}"}, "sk": {"S": "STATE"}})
        return item.get("Item", {}).get("status", {}).get("S")

    queues = {}
    message_ids = itertools.count()

    def take_command(host):
        """Whether the host had a command (now taken off its queue)."""
        got = sqs.receive_message(QueueUrl=queues[host], MaxNumberOfMessages=10).get("Messages", [])
        for message in got:
            sqs.delete_message(QueueUrl=queues[host], ReceiptHandle=message["ReceiptHandle"])
        return bool(got)

    def events_of(messages):
        """SQS events of up to ten (sender, body) messages, as the event source batches them."""
        return [{"Records": [{"messageId": f"m{next(message_ids)}", "receiptHandle": "h", "body": body,
                              "attributes": {"SenderId": sender}, "eventSource": "aws:sqs"}
                             for sender, body in messages[start:start + 10]]}
                for start in range(0, len(messages), 10)]

    def deliver(event):
        failed = invoke(endpoint, "batch-advance", event, timeout=600)["batchItemFailures"]
        if failed:
            raise SystemExit(f"reports refused: {failed}")

    totals, reports_phases, per_host, bytes_per_host, lost_per_host = [], [], [], [], []
    by_operation, refused_in_all = collections.Counter(), collections.Counter()
    for run in range(runs):
        counter.take()
        started = time.monotonic()
        # Dispatching thousands of commands through moto takes minutes (each host's first
        # command also creates its queue); real SQS takes seconds.
        deployment_id = invoke(endpoint, "create-deployment", {"applicationName": "bench", "deploymentGroupName": config,
            "revision": {"revisionType": "S3", "s3Location": {"bucket": "gantry-revisions", "key": "bench/noop.tgz", "bundleType": "tgz"}}},
            timeout=1800)["deploymentId"]
        if not queues:
            queues.update({host: sqs.get_queue_url(QueueName=f"gantry-commands-{host}")["QueueUrl"] for host in hosts})

        def reports_of(host):
            return [(f"{role_id}:{host}", body) for body in report_messages(deployment_id, host)]

        with concurrent.futures.ThreadPoolExecutor(16) as pool, \
                concurrent.futures.ThreadPoolExecutor(workers) as deliveries:
            if config == "AllAtOnce":
                def take(host):
                    deadline = time.monotonic() + 120
                    while not take_command(host):
                        if time.monotonic() > deadline:
                            raise SystemExit(f"no command for {host}")
                    return reports_of(host)

                events = events_of([message for messages in pool.map(take, hosts) for message in messages])
                reports_started = time.monotonic()
                # Lambda runs several batches of one queue at once; so does the harness.
                list(deliveries.map(deliver, events))
            else:
                # One host at a time: find the host the next command went to, hand its
                # reports in, and so on. The dispatcher takes hosts in a steady order, so
                # scanning the pending ones from the front finds the next one early.
                pending = list(hosts)
                reports_started = None
                while pending:
                    commanded = []
                    deadline = time.monotonic() + 120
                    while not commanded:
                        for start in range(0, len(pending), 16):
                            chunk = pending[start:start + 16]
                            commanded = [host for host, got in zip(chunk, pool.map(take_command, chunk)) if got]
                            if commanded:
                                break
                        if not commanded:
                            if time.monotonic() > deadline:
                                raise SystemExit(f"no next command; {len(pending)} hosts pending")
                            time.sleep(0.01)
                    if reports_started is None:
                        reports_started = time.monotonic()
                    pending = [host for host in pending if host not in commanded]
                    events = events_of([message for host in commanded for message in reports_of(host)])
                    list(deliveries.map(deliver, events))
        wait_for(lambda: status(deployment_id) == "Succeeded", 1800, "Succeeded", interval=0.05)
        finished = time.monotonic()
        totals.append(finished - started)
        reports_phases.append(finished - reports_started)
        time.sleep(1.5)  # let the deployment's last effects (the lock, the group) go out
        requests, write_bytes, refused = counter.take()
        per_host.append(sum(requests.values()) / size)
        bytes_per_host.append(write_bytes / size)
        lost_per_host.append({kind: lost / size for kind, lost in lost_by_kind(refused).items()})
        by_operation.update(requests)
        refused_in_all.update(refused)
    return {
        "hosts": size,
        "workers": workers,
        "config": config,
        "runs": runs,
        "create_to_succeeded_s_median": statistics.median(totals),
        # From the first report handed to batch-advance to Succeeded.
        "reports_phase_s_median": statistics.median(reports_phases),
        "requests_per_host_median": statistics.median(per_host),
        "dynamodb_write_bytes_per_host_median": statistics.median(bytes_per_host),
        "lost_races_per_host_median": {kind: statistics.median(run[kind] for run in lost_per_host) for kind in KINDS},
        "lost_races_by_code_per_host": {f"{kind} {code}": round(count / (runs * size), 4)
                                        for (kind, code), count in sorted(refused_in_all.items())},
        "requests_by_operation_per_host": {k: round(v / (runs * size), 3) for k, v in sorted(by_operation.items())},
    }


def self_test():
    """The lost-race parsing and the proxy's hand-off, on synthetic DynamoDB bodies."""
    import control_plane

    def transact(*sks):
        actions = ["Put", "Update", "Put", "Update", "ConditionCheck", "Delete"]
        return json.dumps({"TransactItems": [
            {actions[i]: {"TableName": "gantry", ("Item" if actions[i] == "Put" else "Key"):
                          {"pk": {"S": "DEPLOYMENT#d-1"}, "sk": {"S": sk}}}} for i, sk in enumerate(sks)]}).encode()

    def cancelled(*codes):
        return json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                           "Message": "Transaction cancelled",
                           "CancellationReasons": [{"Code": code} for code in codes]}).encode()

    def single(sk, field="Key"):
        return json.dumps({"TableName": "gantry", field: {"pk": {"S": "DEPLOYMENT#d-1"}, "sk": {"S": sk}}}).encode()

    failed_check = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
                               "message": "The conditional request failed"}).encode()
    run = transact("TARGET#host-00001", "STATE#COUNT#07", "STATE#OUTBOX#0001", "STATE")
    cases = [
        # Another run took the tally first, and the summary's version moved on.
        (("TransactWriteItems", run, 400, cancelled("None", "TransactionConflict", "None", "ConditionalCheckFailed")),
         [("tally", "TransactionConflict"), ("summary", "ConditionalCheckFailed")]),
        (("TransactWriteItems", run, 400, cancelled("ConditionalCheckFailed", "None", "ConditionalCheckFailed", "None")),
         [("host", "ConditionalCheckFailed"), ("outbox", "ConditionalCheckFailed")]),
        (("TransactWriteItems", transact("CONFIG", "STATE"), 400, cancelled("TransactionConflict", "None")),
         [("other", "TransactionConflict")]),
        (("TransactWriteItems", run, 200, b"{}"), []),
        (("TransactWriteItems", run, 400, json.dumps({"__type": "com.amazon.coral.validate#ValidationException"}).encode()), []),
        (("UpdateItem", single("STATE"), 400, failed_check), [("summary", "ConditionalCheckFailed")]),
        (("PutItem", single("TARGET#host-00002", "Item"), 400, failed_check), [("host", "ConditionalCheckFailed")]),
        (("UpdateItem", single("DECISION_CLAIM"), 400, failed_check), [("claim", "ConditionalCheckFailed")]),
        (("UpdateItem", single("STATE#COUNT#31"), 200, b"{}"), []),
        (("GetItem", single("STATE"), 400, failed_check), []),
        (("SendMessage", b"Action=SendMessage", 400, b"<Error/>"), []),
        # Callers that pass no answer keep working.
        (("PutItem", single("STATE", "Item")), []),
    ]
    for arguments, expected in cases:
        answer = arguments[2:] or (None, b"")
        got = refused_writes(*arguments[:2], *answer)
        assert got == expected, f"{arguments[0]} {answer}: {got} != {expected}"

    counter = Counter()
    for arguments, _ in cases:
        counter.add(*arguments)
    requests, write_bytes, refused = counter.take()
    assert requests["TransactWriteItems"] == 5 and requests["UpdateItem"] == 3 and requests["PutItem"] == 2, requests
    assert write_bytes == sum(len(arguments[1]) for arguments, _ in cases if arguments[0] in WRITES)
    assert lost_by_kind(refused) == {"summary": 2, "tally": 1, "host": 2, "claim": 1, "outbox": 1, "other": 1}, lost_by_kind(refused)
    assert counter.take()[2] == collections.Counter()

    # Through control_plane's proxy to a stand-in for moto that refuses every write (once
    # gzipped): the proxy must hand over the answer's status and decoded body.
    class Refusing(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            gzipped = bool(self.headers.get("X-Test-Gzip"))
            answer = cancelled("None", "TransactionConflict", "None", "ConditionalCheckFailed") \
                if self.headers["X-Amz-Target"].endswith("TransactWriteItems") else failed_check
            if gzipped:
                answer = gzip.compress(answer)
            self.send_response(400)
            if gzipped:
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    counter = Counter()
    proxy = start_proxy(upstream.server_address[1], counter)
    try:
        for target, body, gzipped in [("TransactWriteItems", run, False), ("UpdateItem", single("STATE"), True)]:
            headers = {"X-Amz-Target": f"DynamoDB_20120810.{target}", "Content-Type": "application/x-amz-json-1.0"}
            if gzipped:
                headers["X-Test-Gzip"] = "1"
            request = urllib.request.Request(f"http://127.0.0.1:{proxy.server_address[1]}/", data=body,
                                             headers=headers, method="POST")
            try:
                urllib.request.urlopen(request, timeout=10)
                raise AssertionError("the stand-in answered 200")
            except urllib.error.HTTPError as error:
                assert error.code == 400, error.code
                error.read()
                error.close()
    finally:
        proxy.shutdown()
        proxy.server_close()
        upstream.shutdown()
        upstream.server_close()
    requests, _, refused = counter.take()
    assert requests == {"TransactWriteItems": 1, "UpdateItem": 1}, requests
    assert lost_by_kind(refused) == {"summary": 2, "tally": 1, "host": 0, "claim": 0, "outbox": 0, "other": 0}, lost_by_kind(refused)

    # control_plane.py's own Counter takes both kinds of call.
    plain = control_plane.Counter()
    plain.add("PutItem")
    plain.add("PutItem", b"{}", 400, failed_check)
    assert plain.take() == {"PutItem": 2}

    invocations = {"functions": {"batch-advance": {"count": 40, "p50Ms": 12.4, "p99Ms": 180.2, "maxMs": 240.9,
                                                   "timeoutMs": 60000, "timeouts": 1}}}
    row = {"config": "AllAtOnce", "hosts": 100, "workers": 5, "create_to_succeeded_s_median": 12.34,
           "reports_phase_s_median": 3.21, "requests_per_host_median": 2.5, "dynamodb_write_bytes_per_host_median": 1234.5,
           "lost_races_per_host_median": {"summary": 0.39, "tally": 0.0, "host": 0.01, "claim": 0.0, "outbox": 0.0, "other": 0.0},
           "invocations": invocations}
    table = markdown_table([row, {**row, "invocations": {}}])
    assert "| 0.390 / 0.000 / 0.010 | 12 / 180 / 241 ms (60 s), 1 of 40 timed out |" in table, table
    assert table.splitlines()[-1].endswith("| - |"), table
    print(table)
    print("self-test passed")


if __name__ == "__main__":
    main()
