#!/usr/bin/env python3
"""The peer baseline of bench/aws_requests.py: the same revision deployed by ansible-core.

ansible-playbook (from .venv-ansible/, `make ansible-venv`) deploys aws_requests.py's
revision (four short hooks and twenty files) to N local hosts, in the batches of
CodeDeploy's OneAtATime (`serial: 1`), HalfAtATime (`serial: "50%"`) and AllAtOnce
(`serial: "100%"`), with the steps the agent takes for an in-place deployment, each one
a stock module: ApplicationStop (the previous revision's script, if it has one),
DownloadBundle (a presigned S3 link to moto, as the agent gets), unpacking, BeforeInstall,
Install, AfterInstall, ApplicationStart and ValidateService.

A host is `ansible_connection=local` with a directory of its own standing in for `/`, as
the benchmark's agents are local processes; forks = N, so that a batch runs in parallel
as the agents do, and any failed host stops the play as it stops a deployment.

After a warm-up deployment, times one ansible-playbook run per configuration and prints
a JSON line each. Usage:
    .venv/bin/python bench/peer_ansible.py [--sizes 10,100] [--configs OneAtATime,HalfAtATime,AllAtOnce] [--ansible-bin .venv-ansible/bin]
"""

import argparse
import json
import os
import subprocess
import tempfile
import time

import boto3

from harness import ROOT, start_moto, stop

SERIAL = {"OneAtATime": 1, "HalfAtATime": "50%", "AllAtOnce": "100%"}
HOOKS = ("BeforeInstall", "AfterInstall", "ApplicationStart", "ValidateService")


def hook(event):
    # `sh script`: the agent makes a hook executable before it runs it; the bundle's are 0644.
    return {"name": event, "ansible.builtin.command": "/bin/sh {{ archive }}/scripts/" + event + ".sh", "timeout": 30}


def playbook(config):
    """The agent's lifecycle events for an in-place deployment, one task (or two) each."""
    return [{
        "name": f"deploy ({config})",
        "hosts": "all",
        "gather_facts": False,
        "serial": SERIAL[config],
        # A failed host fails the deployment: no further task and no further batch.
        "any_errors_fatal": True,
        "vars": {
            "root": "{{ hosts_dir }}/{{ inventory_hostname }}",
            "deployment": "{{ root }}/opt/deploy/{{ number }}",
            "archive": "{{ deployment }}/deployment-archive",
            "previous": "{{ root }}/opt/deploy/{{ number - 1 }}/deployment-archive",
        },
        "tasks": [
            # The last revision's ApplicationStop: this revision has none, so the agent
            # looks and skips it, as this does.
            {"name": "ApplicationStop: find", "ansible.builtin.stat": {"path": "{{ previous }}/scripts/ApplicationStop.sh"},
             "register": "stop_script"},
            {"name": "ApplicationStop", "ansible.builtin.command": "/bin/sh {{ stop_script.stat.path }}",
             "when": "stop_script.stat.exists", "timeout": 30},
            {"name": "DownloadBundle: directory", "ansible.builtin.file": {"path": "{{ archive }}", "state": "directory"}},
            {"name": "DownloadBundle", "ansible.builtin.get_url": {"url": "{{ bundle_url }}", "dest": "{{ deployment }}/bundle.tgz"}},
            {"name": "DownloadBundle: unpack", "ansible.builtin.unarchive": {
                "src": "{{ deployment }}/bundle.tgz", "dest": "{{ archive }}", "remote_src": True}},
            hook("BeforeInstall"),
            # appspec.yml's files section: site/ into /srv/bench, overwriting.
            {"name": "Install", "ansible.builtin.copy": {"src": "{{ archive }}/site/", "dest": "{{ root }}/srv/bench/",
                                                        "remote_src": True}},
            *(hook(event) for event in HOOKS[1:]),
        ],
    }]


def write_config(work, python):
    """ansible.cfg in `work`, and the environment that points ansible-playbook at it."""
    config = os.path.join(work, "ansible.cfg")
    tmp = os.path.join(work, "ansible-tmp")
    for name in ("local", "remote"):
        # Made here: ansible warns when it has to make remote_tmp itself.
        os.makedirs(os.path.join(tmp, name), mode=0o700, exist_ok=True)
    with open(config, "w") as file:
        file.write(f"""[defaults]
home = {os.path.join(work, "ansible-home")}
interpreter_python = {python}
local_tmp = {tmp}/local
remote_tmp = {tmp}/remote
host_key_checking = False
retry_files_enabled = False
deprecation_warnings = False
nocolor = True
# The default callback without a line per host and task: banners, failures and the recap.
stdout_callback = ansible.builtin.default
display_ok_hosts = False
display_skipped_hosts = False

[connection]
# Modules fed to the interpreter's stdin, not copied to a temporary file first.
pipelining = True
""")
    return dict(os.environ, ANSIBLE_CONFIG=config)


def deploy(ansible_bin_dir, work, size, config, bundle_url):
    """Deploys the revision at `bundle_url` to `size` local hosts with `config`'s batches;
    raises with ansible's output if the play fails or a host lacks the files."""
    ansible_bin_dir = os.path.abspath(ansible_bin_dir)
    hosts_dir = os.path.join(work, "ansible-hosts")
    runs = os.path.join(work, "ansible-runs")
    os.makedirs(runs, exist_ok=True)
    # Each deployment gets a number, as the agent's a deployment id: its archive
    # directory, whose predecessor holds the ApplicationStop script to run.
    number = len(os.listdir(runs)) + 1
    run = os.path.join(runs, str(number))
    os.makedirs(run)

    hosts = [f"host-{i:03d}" for i in range(size)]
    python = os.path.join(ansible_bin_dir, "python")
    env = write_config(work, python)
    with open(os.path.join(run, "inventory.ini"), "w") as file:
        file.writelines(f"{host} ansible_connection=local ansible_python_interpreter={python}\n" for host in hosts)
    with open(os.path.join(run, "playbook.yml"), "w") as file:
        json.dump(playbook(config), file, indent=1)  # JSON is YAML
    with open(os.path.join(run, "vars.json"), "w") as file:
        json.dump({"hosts_dir": hosts_dir, "number": number, "bundle_url": bundle_url}, file)

    command = [os.path.join(ansible_bin_dir, "ansible-playbook"), "-i", "inventory.ini", "--forks", str(size),
               "-e", "@vars.json", "playbook.yml"]
    started = time.monotonic()
    result = subprocess.run(command, cwd=run, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    with open(os.path.join(run, "ansible.log"), "w") as file:
        file.write(result.stdout + result.stderr)
    if result.returncode != 0:
        raise SystemExit(f"ansible-playbook failed ({result.returncode}) deploying {config} to {size} hosts:\n"
                         f"{result.stdout}{result.stderr}")
    missing = [host for host in hosts if not os.path.exists(os.path.join(hosts_dir, host, "srv/bench/page-00.html"))]
    if missing:
        raise SystemExit(f"{config} to {size} hosts: no srv/bench/page-00.html on {', '.join(missing)}:\n{result.stdout}")
    return {"seconds": round(seconds, 2), "ok": True, "hosts": size, "serial": SERIAL[config], "forks": size,
            "log": os.path.join(run, "ansible.log")}


def main():
    from aws_requests import CONFIGS, revision  # here: aws_requests imports this module

    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10,100")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--ansible-bin", default=os.path.join(ROOT, ".venv-ansible", "bin"))
    args = parser.parse_args()
    if not os.path.exists(os.path.join(args.ansible_bin, "ansible-playbook")):
        raise SystemExit(f"no ansible-playbook in {args.ansible_bin}: run `make ansible-venv`")
    sizes = [int(size) for size in args.sizes.split(",")]
    configs = args.configs.split(",")

    work = tempfile.mkdtemp(prefix="gantry-bench-ansible-")
    moto, moto_endpoint = start_moto(work)
    try:
        # The bucket gantry-local keeps revisions in; tests/moto_server.py starts empty.
        s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        s3.create_bucket(Bucket="gantry-revisions")
        s3.put_object(Bucket="gantry-revisions", Key="bench/requests.tgz", Body=revision())
        bundle_url = s3.generate_presigned_url("get_object", ExpiresIn=3600,
                                               Params={"Bucket": "gantry-revisions", "Key": "bench/requests.tgz"})
        for size in sizes:
            for config in configs:
                deploy(args.ansible_bin, work, size, config, bundle_url)  # warm-up
                row = deploy(args.ansible_bin, work, size, config, bundle_url)
                print(f"{config}, {size} hosts: {json.dumps(row)}", flush=True)
    finally:
        stop([moto])


if __name__ == "__main__":
    main()
