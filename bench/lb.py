#!/usr/bin/env python3
"""What traffic control costs an in-place deployment behind a load balancer, and what it
saves the load balancer's clients (issue 16's benchmarks), against a local moto server.

Starts moto with the stand-in (tests/moto_server.py: real ELBv2 health checks and a
loopback load balancer per listener), gantry-local, and tests/fleet_runner.py, which runs
a gantry-agent per EC2 instance of an Auto Scaling group of four behind target group
`web` (the stand-in's shortest health settings: a check every second, healthy and
unhealthy after two, a deregistration delay of one second). examples/lb-app v1 goes to
all four at once; then, `--runs` times each, a new version goes half at a time (two
batches of two) with the group WITH_TRAFFIC_CONTROL and WITHOUT_TRAFFIC_CONTROL
(UpdateDeploymentGroup's deploymentStyle between deployments; the order alternates from
run to run), each deployment starting with every target healthy. Throughout each, a
client loop sends GET / through the load balancer, one connection per request, every
10 ms, as tests/tests/load_balancer.rs does, until 20 requests after the end.

Measures, medians over the runs:
- the deployment, createTime to completeTime, with and without traffic control, and
  their ratio;
- each batch, its hosts' first event start to their last event end, with and without:
  the difference is what traffic control adds per batch;
- each host's BlockTraffic and AllowTraffic, startTime to endTime (the control plane's
  own steps, as GetDeploymentTarget's lifecycleEvents give them);
- the client loop's failed requests (goal 0 with traffic control) and largest latency.

Writes bench/results/lb.json and prints a Markdown table. Usage:
    .venv/bin/python bench/lb.py [--runs N] [--profile release|debug]
"""

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import types

import boto3
from botocore.config import Config

from harness import ROOT, SDK_ENV, TARGET, api, free_port, invoke, start_local, start_moto, stop, tgz, wait_for

TERMINAL = {"Succeeded", "Failed", "Stopped"}
INSTANCES = 4
WITH = "WITH_TRAFFIC_CONTROL"
WITHOUT = "WITHOUT_TRAFFIC_CONTROL"
LOOP_PACE = 0.01
REQUEST_TIMEOUT = 5
REQUESTS_AFTER_END = 20

# The template's Ec2HostPolicy as rendered for the stand-in (the one file local/tests/template.rs
# checks the template against), on the instance profile's role the agents assume.
with open(os.path.join(ROOT, "local", "ec2-host-policy.json")) as policy:
    HOST_POLICY = json.load(policy)
EC2_TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}

AGENT_CONFIG = """identity:
  ec2:
    metadata_endpoint: "{metadata_endpoint}"
region: {region}
queue_prefix: gantry-commands-
reports_queue: gantry-reports
root_dir: {dir}/root
log_dir: {dir}/logs
install_root: {dir}/fs
poll_wait_seconds: 20
stop_grace_seconds: 5
"""


def stack(session, moto_endpoint, port):
    """The hosts' role, the load balancer, target group `web` and Auto Scaling group `web`
    (as tests/tests/load_balancer.rs and demo/lb.sh make them); returns (the load
    balancer's address, the target group's ARN)."""
    iam, ec2, asg = (session.client(s, endpoint_url=moto_endpoint) for s in ("iam", "ec2", "autoscaling"))
    # botocore refuses a health check interval below AWS's 5 s; the stand-in takes 1 s.
    elb = session.client("elbv2", endpoint_url=moto_endpoint, config=Config(parameter_validation=False))
    iam.create_role(RoleName="gantry-host", AssumeRolePolicyDocument=json.dumps(EC2_TRUST))
    iam.put_role_policy(RoleName="gantry-host", PolicyName="gantry-host", PolicyDocument=json.dumps(HOST_POLICY))
    iam.create_instance_profile(InstanceProfileName="gantry-host")
    iam.add_role_to_instance_profile(InstanceProfileName="gantry-host", RoleName="gantry-host")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = sorted((s["AvailabilityZone"], s["SubnetId"])
                     for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"])[:2]
    subnets = [subnet for _, subnet in subnets]
    balancer = elb.create_load_balancer(Name="web", Subnets=subnets)["LoadBalancers"][0]
    group = elb.create_target_group(Name="web", Protocol="HTTP", Port=port, VpcId=vpc, HealthCheckPath="/health",
                                    HealthCheckIntervalSeconds=1, HealthyThresholdCount=2,
                                    UnhealthyThresholdCount=2)["TargetGroups"][0]["TargetGroupArn"]
    elb.modify_target_group_attributes(TargetGroupArn=group, Attributes=[
        {"Key": "deregistration_delay.timeout_seconds", "Value": "1"}])
    elb.create_listener(LoadBalancerArn=balancer["LoadBalancerArn"], Protocol="HTTP", Port=80,
                        DefaultActions=[{"Type": "forward", "TargetGroupArn": group}])
    image = ec2.describe_images()["Images"][0]["ImageId"]
    asg.create_launch_configuration(LaunchConfigurationName="web", ImageId=image, InstanceType="t3.micro",
                                    IamInstanceProfile="gantry-host")
    asg.create_auto_scaling_group(AutoScalingGroupName="web", LaunchConfigurationName="web", MinSize=INSTANCES,
                                  MaxSize=INSTANCES, DesiredCapacity=INSTANCES, VPCZoneIdentifier=",".join(subnets),
                                  Tags=[{"Key": "gantry:managed", "Value": "true", "PropagateAtLaunch": False}])
    return balancer["DNSName"], group


def bundle(version, port):
    """examples/lb-app saying `version`, listening on `port`, as a gzipped tarball."""
    source = os.path.join(ROOT, "examples", "lb-app")
    replaced = {"app/version.txt": f"{version}\n".encode(), "app/port": f"{port}\n".encode()}
    entries = []
    for directory, _, files in os.walk(source):
        for name in sorted(files):
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, source)
            with open(path, "rb") as file:
                body = file.read()
            entries.append((relative, replaced.get(relative, body), os.stat(path).st_mode & 0o777))
    return tgz(entries)


class ClientLoop:
    """GET / through the load balancer, one connection per request, every LOOP_PACE
    seconds, in a thread; each request's send time, latency and outcome."""

    def __init__(self, balancer):
        self.balancer = balancer
        self.samples = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopping.is_set():
            sent = time.time()
            began = time.monotonic()
            try:
                connection = http.client.HTTPConnection(self.balancer, timeout=REQUEST_TIMEOUT)
                connection.request("GET", "/", headers={"Connection": "close"})
                response = connection.getresponse()
                body = response.read().decode().strip()
                connection.close()
                outcome = (True, body) if response.status == 200 else (False, f"HTTP {response.status}")
            except OSError as error:
                outcome = (False, f"{type(error).__name__}: {error}")
            self.samples.append((sent, time.monotonic() - began, outcome))
            time.sleep(LOOP_PACE)

    def finish(self, ended):
        """Stops once REQUESTS_AFTER_END requests were sent after `ended`."""
        wait_for(lambda: sum(1 for s in self.samples if s[0] > ended) >= REQUESTS_AFTER_END, 60,
                 "the client loop's last requests", interval=0.05)
        self.stopping.set()
        self.thread.join()
        return self.samples


def healthy_count(elb, target_group):
    described = elb.describe_target_health(TargetGroupArn=target_group)["TargetHealthDescriptions"]
    return sum(1 for d in described if d["TargetHealth"]["State"] == "healthy")


def targets(endpoint, deployment_id):
    ids = api(endpoint, "ListDeploymentTargets", {"deploymentId": deployment_id})["targetIds"]
    got = api(endpoint, "BatchGetDeploymentTargets", {"deploymentId": deployment_id, "targetIds": ids})
    return [target["instanceTarget"] for target in got["deploymentTargets"]]


def create_deployment(endpoint, version, config=None):
    """CreateDeployment of revisions/shop/<version>.tgz to group web; returns its id."""
    created = invoke(endpoint, "create-deployment", {
        "applicationName": "shop", "deploymentGroupName": "web",
        **({"deploymentConfigName": config} if config else {}),
        "revision": {"revisionType": "S3", "s3Location": {
            "bucket": "gantry-revisions", "key": f"revisions/shop/{version}.tgz", "bundleType": "tgz"}},
    })
    return created["deploymentId"]


def deploy(endpoint, version, config=None, timeout=300):
    return wait_for_deployment(endpoint, create_deployment(endpoint, version, config), timeout)


def wait_for_deployment(endpoint, deployment_id, timeout=300):
    """Waits for the deployment's end; exits unless it succeeded. Returns its info and
    its targets."""

    def ended():
        info = api(endpoint, "GetDeployment", {"deploymentId": deployment_id})["deploymentInfo"]
        return info if info["status"] in TERMINAL else None

    # Times come from the deployment and its hosts' events, so polling costs no precision.
    info = wait_for(ended, timeout, f"deployment {deployment_id}", interval=0.25)
    if info["status"] != "Succeeded":
        raise SystemExit(f"deployment {deployment_id} ended {info['status']}: {info.get('errorInformation')}")
    return info, targets(endpoint, deployment_id)


def event_span(target, name):
    for event in target["lifecycleEvents"]:
        if event["lifecycleEventName"] == name and event.get("startTime") is not None and event.get("endTime") is not None:
            return event["endTime"] - event["startTime"]
    return None


# The control plane's steps and the agent's events on either side of them: each step
# starts when the agent's command before it has reported, and the agent's next command
# starts once the control plane has sent it (SQS, then the agent's long poll).
HANDOFFS = (("BeforeBlockTraffic", "BlockTraffic"), ("BlockTraffic", "AfterBlockTraffic"),
            ("BeforeAllowTraffic", "AllowTraffic"), ("AllowTraffic", "AfterAllowTraffic"))


def handoffs(target):
    """Seconds between the traffic steps and the agent's events next to them, summed."""
    events = {e["lifecycleEventName"]: e for e in target["lifecycleEvents"]}
    gaps = [events[after]["startTime"] - events[before]["endTime"]
            for before, after in HANDOFFS if before in events and after in events]
    return sum(gaps) if gaps else None


def batches(hosts):
    """Each batch's span, first event start to last event end, in the order they ran:
    HalfAtATime over four sends two hosts at a time, so the hosts sorted by their first
    event's start pair up into batches."""
    windows = []
    for target in hosts:
        starts = [e["startTime"] for e in target["lifecycleEvents"] if e.get("startTime") is not None]
        ends = [e["endTime"] for e in target["lifecycleEvents"] if e.get("endTime") is not None]
        windows.append((min(starts), max(ends)))
    windows.sort()
    size = INSTANCES // 2
    return [max(end for _, end in windows[i:i + size]) - windows[i][0] for i in range(0, len(windows), size)]


def measure(endpoint, balancer, version):
    loop = ClientLoop(balancer)
    try:
        info, hosts = deploy(endpoint, version)
    finally:
        samples = loop.finish(time.time())
    failures = [outcome[1] for _, _, outcome in samples if not outcome[0]]
    errors = {}
    for failure in failures:
        errors[failure] = errors.get(failure, 0) + 1
    return {
        "deployment_id": info["deploymentId"],
        "total": info["completeTime"] - info["createTime"],
        "batches": batches(hosts),
        "block_traffic": [event_span(t, "BlockTraffic") for t in hosts if event_span(t, "BlockTraffic") is not None],
        "allow_traffic": [event_span(t, "AllowTraffic") for t in hosts if event_span(t, "AllowTraffic") is not None],
        "handoffs": [handoffs(t) for t in hosts if handoffs(t) is not None],
        "events": {t["targetId"]: [(e["lifecycleEventName"], e.get("startTime"), e.get("endTime"))
                                   for e in t["lifecycleEvents"]] for t in hosts},
        "requests": len(samples),
        "failed": len(failures),
        "errors": errors,
        "largest_latency": max(latency for _, latency, _ in samples),
    }


def median(values):
    return statistics.median(values) if values else None


def kill_recorded(fleet_dir):
    """What outlived the fleet runner, by the pids recorded in each instance's run/: the
    lb-app servers the hooks started (and any agent the runner could not stop)."""
    for instance in os.listdir(fleet_dir):
        run = os.path.join(fleet_dir, instance, "run")
        if not os.path.isdir(run):
            continue
        for name in os.listdir(run):
            if not name.endswith(".pid"):
                continue
            try:
                pid = int(open(os.path.join(run, name)).read().strip())
                os.kill(pid, signal.SIGTERM)
            except (ValueError, OSError):
                continue
            try:
                wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 5, f"pid {pid}", interval=0.05)
            except SystemExit:
                os.kill(pid, signal.SIGKILL)


def start_fleet_runner(work, fleet_dir, moto_endpoint, agent):
    """tests/fleet_runner.py, running `agent` (as gantry-agent.service would, through
    tests/agent_service.sh) for every running EC2 instance, in `fleet_dir`."""
    template = os.path.join(work, "agent.yml.in")
    with open(template, "w") as file:
        file.write(AGENT_CONFIG)
    command = (f"'{ROOT}/tests/agent_service.sh' {{dir}}/run env LB_APP_ROOT={{dir}}/fs/srv/lb-app "
               f"LB_APP_RUN_DIR={{dir}}/run '{agent}' --config {{dir}}/agent.yml")
    return subprocess.Popen(
        [os.path.join(ROOT, ".venv/bin/python"), os.path.join(ROOT, "tests/fleet_runner.py"),
         "--endpoint", moto_endpoint, "--dir", fleet_dir, "--grace", "5", "--config-template", template,
         "--command", command],
        env=dict(os.environ, **SDK_ENV), stdin=subprocess.DEVNULL,
        stdout=open(os.path.join(work, "fleet_runner.log"), "w"), stderr=subprocess.STDOUT)


def wait_for_agents(fleet_dir, count=INSTANCES):
    def running():
        try:
            return len(json.load(open(os.path.join(fleet_dir, "fleet.json")))) == count
        except (OSError, ValueError):
            return False

    wait_for(running, 60, "an agent per instance", interval=0.1)


def create_group(endpoint):
    """Application shop, group web: Auto Scaling group web, HalfAtATime, in place
    WITH_TRAFFIC_CONTROL through target group web."""
    api(endpoint, "CreateApplication", {"applicationName": "shop"})
    api(endpoint, "CreateDeploymentGroup", {
        "applicationName": "shop", "deploymentGroupName": "web",
        "deploymentConfigName": "CodeDeployDefault.HalfAtATime", "autoScalingGroups": ["web"],
        "deploymentStyle": {"deploymentType": "IN_PLACE", "deploymentOption": WITH},
        "loadBalancerInfo": {"targetGroupInfoList": [{"name": "web"}]},
    })


def push(s3, version, port):
    """examples/lb-app saying `version` as revisions/shop/<version>.tgz."""
    s3.put_object(Bucket="gantry-revisions", Key=f"revisions/shop/{version}.tgz", Body=bundle(version, port))


def set_up(work, fleet_dir, agent, local_binary, processes, local_args=()):
    """moto, gantry-local (`local_args`) and the fleet runner (appended to `processes`, in
    that order, as they start), the stack, group web, and v1 deployed to all four at once,
    every target healthy. Returns gantry-local's and moto's endpoints, the boto3 session,
    the revisions' port, the load balancer's address, the target group's ARN and elb and
    s3 clients, as a namespace."""
    moto, moto_endpoint = start_moto(work)
    processes.append(moto)
    local, endpoint = start_local(local_binary, moto_endpoint, os.path.join(work, "local.log"), local_args)
    processes.append(local)
    session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="testing",
                                    aws_secret_access_key="testing")
    port = free_port()
    balancer, target_group = stack(session, moto_endpoint, port)
    elb = session.client("elbv2", endpoint_url=moto_endpoint)
    s3 = session.client("s3", endpoint_url=moto_endpoint)

    processes.append(start_fleet_runner(work, fleet_dir, moto_endpoint, agent))
    wait_for_agents(fleet_dir)

    create_group(endpoint)
    # v1 everywhere at once (nothing serves yet), then every target healthy.
    push(s3, "v1", port)
    deploy(endpoint, "v1", "CodeDeployDefault.AllAtOnce")
    wait_for(lambda: healthy_count(elb, target_group) == INSTANCES, 60, "four healthy targets", interval=0.1)
    return types.SimpleNamespace(endpoint=endpoint, moto_endpoint=moto_endpoint, session=session, port=port,
                                 balancer=balancer, target_group=target_group, elb=elb, s3=s3)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", default="release", help="the cargo profile whose binaries to run")
    parser.add_argument("--agent")
    parser.add_argument("--local")
    parser.add_argument("--output", default=os.path.join(ROOT, "bench", "results", "lb.json"))
    args = parser.parse_args()
    agent = args.agent or os.path.join(TARGET, args.profile, "gantry-agent")
    local_binary = args.local or os.path.join(TARGET, args.profile, "gantry-local")

    work = tempfile.mkdtemp(prefix="gantry-bench-lb-")
    fleet_dir = os.path.join(work, "fleet")
    os.makedirs(fleet_dir)
    processes = []
    try:
        setup = set_up(work, fleet_dir, agent, local_binary, processes)
        endpoint, balancer, elb, target_group = setup.endpoint, setup.balancer, setup.elb, setup.target_group
        versions = (f"v{n}" for n in range(2, 2 * args.runs + 2))

        def next_version():
            version = next(versions)
            push(setup.s3, version, setup.port)
            return version

        runs = {WITH: [], WITHOUT: []}
        for run in range(args.runs):
            order = (WITH, WITHOUT) if run % 2 == 0 else (WITHOUT, WITH)
            for option in order:
                api(endpoint, "UpdateDeploymentGroup", {
                    "applicationName": "shop", "currentDeploymentGroupName": "web",
                    "deploymentStyle": {"deploymentType": "IN_PLACE", "deploymentOption": option}})
                # Each deployment starts as the first did: every target healthy.
                wait_for(lambda: healthy_count(elb, target_group) == INSTANCES, 60, "four healthy targets",
                         interval=0.1)
                measured = measure(endpoint, balancer, next_version())
                runs[option].append(measured)
                print(f"run {run + 1} {option}: {measured['total']:.2f} s, batches "
                      f"{', '.join(f'{b:.2f}' for b in measured['batches'])} s, BlockTraffic "
                      f"{', '.join(f'{b:.2f}' for b in measured['block_traffic'])} s, AllowTraffic "
                      f"{', '.join(f'{a:.2f}' for a in measured['allow_traffic'])} s, handoffs "
                      f"{', '.join(f'{h:.2f}' for h in measured['handoffs'])} s; {measured['requests']} "
                      f"requests, {measured['failed']} failed, largest latency "
                      f"{measured['largest_latency'] * 1000:.1f} ms {measured['errors'] or ''}", flush=True)

        summary = {}
        for option, measured in runs.items():
            summary[option] = {
                "deployment_s": median([m["total"] for m in measured]),
                "batch_s": median([b for m in measured for b in m["batches"]]),
                "block_traffic_s": median([b for m in measured for b in m["block_traffic"]]),
                "block_traffic_max_s": max([b for m in measured for b in m["block_traffic"]], default=None),
                "allow_traffic_s": median([a for m in measured for a in m["allow_traffic"]]),
                "allow_traffic_max_s": max([a for m in measured for a in m["allow_traffic"]], default=None),
                "handoffs_s": median([h for m in measured for h in m["handoffs"]]),
                "failed_median": median([m["failed"] for m in measured]),
                "failed_max": max(m["failed"] for m in measured),
                "requests_median": median([m["requests"] for m in measured]),
                "largest_latency_ms_median": median([m["largest_latency"] * 1000 for m in measured]),
                "largest_latency_ms_max": max(m["largest_latency"] * 1000 for m in measured),
            }
        summary["ratio"] = summary[WITH]["deployment_s"] / summary[WITHOUT]["deployment_s"]
        summary["added_per_batch_s"] = summary[WITH]["batch_s"] - summary[WITHOUT]["batch_s"]
        results = {"runs": args.runs, "profile": args.profile, "summary": summary, "deployments": runs}
        os.makedirs(os.path.dirname(args.output), exist_ok=True)
        with open(args.output, "w") as file:
            json.dump(results, file, indent=2)
        print(f"\nwrote {args.output}\n")

        w, wo = summary[WITH], summary[WITHOUT]
        print(f"| measure (medians of {args.runs} runs) | {WITH} | {WITHOUT} |")
        print("|---|---|---|")
        print(f"| HalfAtATime deployment of 4, create to Succeeded | {w['deployment_s']:.2f} s | "
              f"{wo['deployment_s']:.2f} s |")
        print(f"| a batch of 2, first event start to last event end | {w['batch_s']:.2f} s | {wo['batch_s']:.2f} s |")
        print(f"| BlockTraffic per host (max) | {w['block_traffic_s']:.2f} s ({w['block_traffic_max_s']:.2f} s) | - |")
        print(f"| AllowTraffic per host (max) | {w['allow_traffic_s']:.2f} s ({w['allow_traffic_max_s']:.2f} s) | - |")
        print(f"| per host, the four handoffs between agent and control plane around them | {w['handoffs_s']:.2f} s | - |")
        print(f"| client loop: requests | {w['requests_median']:.0f} | {wo['requests_median']:.0f} |")
        print(f"| failed requests (max) | {w['failed_median']:.0f} ({w['failed_max']}) | "
              f"{wo['failed_median']:.0f} ({wo['failed_max']}) |")
        print(f"| largest latency (max) | {w['largest_latency_ms_median']:.1f} ms ({w['largest_latency_ms_max']:.1f} ms) | "
              f"{wo['largest_latency_ms_median']:.1f} ms ({wo['largest_latency_ms_max']:.1f} ms) |")
        print(f"\nwith / without: {summary['ratio']:.2f}; traffic control adds {summary['added_per_batch_s']:.2f} s "
              f"per batch")
    finally:
        # The fleet runner first (it stops the agents), what outlived it, then the rest.
        stop(processes[2:])
        kill_recorded(fleet_dir)
        stop(list(reversed(processes[:2])))
        print(f"logs: {work}")

if __name__ == "__main__":
    main()
