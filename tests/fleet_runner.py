#!/usr/bin/env python3
"""Simulated EC2 hosts: a process (a `gantry-agent`, say) for every running instance of
the stand-in's EC2 (launched by RunInstances or by Auto Scaling), stopped when the
instance stops running.

    tests/fleet_runner.py --endpoint http://127.0.0.1:5000 --dir /tmp/fleet \\
        --command '/path/gantry-agent --config {dir}/agent.yml' --config-template agent.yml.in

For each instance, in `<--dir>/<instance id>/`:
- `--config-template`, when given, is written to `agent.yml` with `{instance_id}`,
  `{dir}`, `{address}`, `{metadata_endpoint}` and `{region}` filled in (the same names
  fill `--command`). For gantry-agent:
  `identity: {{ec2: {{metadata_endpoint: "{metadata_endpoint}"}}}}` and its queues.
- an instance metadata service (IMDSv2, tests/standin/imds.py) at the instance's own
  loopback address (tests/standin/addresses.py: 127.B.C.D from its private A.B.C.D) and
  `--metadata-port` (default: one free port, the same for every instance). Its
  credentials are the instance profile's role (the instance's IamInstanceProfile, or
  `--role-arn`) assumed with the instance id as session name.
- the command runs there with the environment of the runner, less its AWS credentials
  (the instance's come from its metadata service), plus AWS_ENDPOINT_URL, AWS_REGION and
  AWS_DEFAULT_REGION,
  AWS_EC2_METADATA_SERVICE_ENDPOINT, GANTRY_INSTANCE_ID and GANTRY_INSTANCE_ADDRESS
  (where the instance's application should listen); output goes to `agent.log`.

`<--dir>/fleet.json` lists the instances being run: {id: {pid, address,
metadata_endpoint, dir}}, rewritten after each change. SIGTERM or SIGINT stops every
process (SIGTERM, then SIGKILL after `--grace` seconds) and the runner; each process is
also killed if the runner dies (Linux's parent-death signal).
"""

import argparse
import ctypes
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import boto3

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from standin import imds  # noqa: E402
from standin.addresses import loopback_for  # noqa: E402

CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                  "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE")


def _die_with_parent():
    # PR_SET_PDEATHSIG: a runner killed outright leaves no host running.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


def _iso(when):
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Host:
    """One running instance: its metadata service and its process."""

    def __init__(self, runner, described):
        self.id = described["InstanceId"]
        self.address = loopback_for(described["PrivateIpAddress"])
        self.dir = os.path.join(runner.args.dir, self.id)
        os.makedirs(self.dir, exist_ok=True)
        self.runner = runner
        self.role_arn = runner.role_of(described)
        self.cached = None
        instance = imds.Instance(described, runner.args.region, self.credentials)
        instance.role_name = self.role_arn.rsplit("/", 1)[-1] if self.role_arn else None
        self.metadata = imds.Server(self.address, runner.metadata_port, instance)
        fill = {"instance_id": self.id, "dir": self.dir, "address": self.address,
                "metadata_endpoint": self.metadata.endpoint, "region": runner.args.region}
        if runner.template is not None:
            with open(os.path.join(self.dir, "agent.yml"), "w") as out:
                out.write(runner.template.format(**fill))
        env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_ENV}
        env.update(AWS_ENDPOINT_URL=runner.args.endpoint, AWS_REGION=runner.args.region,
                   AWS_DEFAULT_REGION=runner.args.region,  # the Python SDK reads this one
                   AWS_EC2_METADATA_SERVICE_ENDPOINT=self.metadata.endpoint, GANTRY_INSTANCE_ID=self.id,
                   GANTRY_INSTANCE_ADDRESS=self.address)
        self.log = open(os.path.join(self.dir, "agent.log"), "ab")
        self.process = subprocess.Popen(shlex.split(runner.args.command.format(**fill)), cwd=self.dir, env=env,
                                        stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                        preexec_fn=_die_with_parent)

    def credentials(self):
        """The role's credentials, renewed a quarter of an hour before they expire."""
        now = datetime.now(timezone.utc)
        if self.cached is None or self.cached["Expiration"] - now < timedelta(minutes=15):
            self.cached = self.runner.sts.assume_role(RoleArn=self.role_arn, RoleSessionName=self.id)["Credentials"]
        c = self.cached
        return {"Code": "Success", "LastUpdated": _iso(now), "Type": "AWS-HMAC", "AccessKeyId": c["AccessKeyId"],
                "SecretAccessKey": c["SecretAccessKey"], "Token": c["SessionToken"],
                "Expiration": _iso(c["Expiration"])}

    def stop(self, grace):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.metadata.stop()
        self.log.close()


class Runner:
    def __init__(self, args):
        self.args = args
        self.template = open(args.config_template).read() if args.config_template else None
        session = boto3.Session(aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
                                aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
                                region_name=args.region)
        self.ec2 = session.client("ec2", endpoint_url=args.endpoint)
        self.iam = session.client("iam", endpoint_url=args.endpoint)
        self.sts = session.client("sts", endpoint_url=args.endpoint)
        self.metadata_port = args.metadata_port or self._free_port()
        self.hosts = {}
        self.stopping = threading.Event()

    @staticmethod
    def _free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def role_of(self, described):
        """The role of the instance's profile, else --role-arn."""
        profile = (described.get("IamInstanceProfile") or {}).get("Arn")
        if profile:
            try:
                roles = self.iam.get_instance_profile(InstanceProfileName=profile.rsplit("/", 1)[-1])[
                    "InstanceProfile"]["Roles"]
                if roles:
                    return roles[0]["Arn"]
            except self.iam.exceptions.NoSuchEntityException:
                pass
        return self.args.role_arn

    def running(self):
        found = {}
        pages = self.ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "instance-state-name", "Values": ["running"]}])
        for page in pages:
            for reservation in page["Reservations"]:
                for instance in reservation["Instances"]:
                    if instance.get("PrivateIpAddress"):
                        found[instance["InstanceId"]] = instance
        return found

    def write_status(self):
        status = {i: {"pid": h.process.pid, "address": h.address, "metadata_endpoint": h.metadata.endpoint,
                      "dir": h.dir} for i, h in self.hosts.items()}
        path = os.path.join(self.args.dir, "fleet.json")
        with open(path + ".tmp", "w") as out:
            json.dump(status, out, indent=2)
        os.replace(path + ".tmp", path)

    def step(self):
        running = self.running()
        changed = False
        for instance_id in [i for i in self.hosts if i not in running]:
            self.hosts.pop(instance_id).stop(self.args.grace)
            changed = True
        for instance_id, described in running.items():
            if instance_id not in self.hosts:
                self.hosts[instance_id] = Host(self, described)
                changed = True
        if changed:
            self.write_status()

    def run(self):
        os.makedirs(self.args.dir, exist_ok=True)
        self.write_status()
        while not self.stopping.is_set():
            try:
                self.step()
            except Exception as error:  # moto restarting, say: try again next round
                print(f"fleet_runner: {error}", file=sys.stderr, flush=True)
            self.stopping.wait(self.args.poll)
        for host in self.hosts.values():
            host.stop(self.args.grace)
        self.hosts.clear()
        self.write_status()


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", required=True, help="the stand-in's URL")
    parser.add_argument("--dir", required=True, help="a directory per instance goes here")
    parser.add_argument("--command", required=True, help="run for each instance ({instance_id}, {dir}, ...)")
    parser.add_argument("--config-template", help="written to <dir>/agent.yml with the same names filled in")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--role-arn", help="the role of instances without an instance profile")
    parser.add_argument("--metadata-port", type=int, default=0)
    parser.add_argument("--poll", type=float, default=0.2, help="seconds between looks at EC2")
    parser.add_argument("--grace", type=float, default=5, help="seconds from SIGTERM to SIGKILL")
    runner = Runner(parser.parse_args(argv))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: runner.stopping.set())
    runner.run()


if __name__ == "__main__":
    main(sys.argv[1:])
