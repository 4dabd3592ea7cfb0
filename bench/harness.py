"""What the benchmarks share: ports, waiting on conditions, bundles, RSS, moto and
gantry-local processes, and the Lambda Invoke API of gantry-local."""

import io
import json
import os
import socket
import subprocess
import tarfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
SDK_ENV = {"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def release_binary(name):
    return os.path.join(TARGET, "release", name)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout, what, interval=0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out waiting for {what}")


def tgz(files):
    """A gzipped tarball of (name, body) or (name, body, mode) entries."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, body, *mode in files:
            info = tarfile.TarInfo(name)
            info.size = len(body)
            info.mode = mode[0] if mode else 0o644
            archive.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def rss_kib(pid, field="VmRSS"):
    """Resident memory; field="RssAnon" counts only the process's own (anonymous) pages,
    not the binary's code pages, which are clean, shared and dropped under pressure."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def start_moto(work):
    """moto through tests/moto_server.py (atomic DynamoDB conditions); returns (process, endpoint)."""
    port = free_port()
    process = subprocess.Popen(
        [os.path.join(ROOT, ".venv/bin/python"), os.path.join(ROOT, "tests/moto_server.py"), "-p", str(port)],
        stdout=open(os.path.join(work, "moto.log"), "w"),
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"

    def answering():
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
            return True
        except Exception:
            return False

    wait_for(answering, 60, "moto", interval=0.05)
    return process, endpoint


def start_local(binary, aws_endpoint, log_path, args=()):
    """A gantry-local whose AWS_ENDPOINT_URL is `aws_endpoint`; returns (process, endpoint)."""
    env = dict(os.environ, AWS_ENDPOINT_URL=aws_endpoint, RUST_LOG="info", **SDK_ENV)
    process = subprocess.Popen([binary, "--port", "0", *args], env=env,
                               stdout=subprocess.PIPE, stderr=open(log_path, "w"), text=True)
    line = process.stdout.readline().strip()
    endpoint = line.removeprefix("gantry-local listening on ")
    if not endpoint.startswith("http"):
        process.kill()
        raise SystemExit(f"gantry-local did not start: {line!r}; see {log_path}")
    return process, endpoint


def stop(processes):
    """SIGTERM every process, then SIGKILL what is still running after 10 s."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def invoke(endpoint, function, payload, timeout=60):
    request = urllib.request.Request(
        f"{endpoint}/2015-03-31/functions/{function}/invocations",
        data=json.dumps(payload).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = json.loads(response.read())
        if response.headers.get("X-Amz-Function-Error"):
            raise SystemExit(f"{function} failed: {body}")
        return body


def api(endpoint, operation, payload):
    return invoke(endpoint, "api", {"operation": operation, "input": payload})


def host_user(moto_endpoint, host):
    """An IAM user of the host's own, as an on-premises host's agent runs as (reports are
    accepted only from their host's identity). Returns its ARN and SDK environment."""
    import boto3

    iam = boto3.client("iam", endpoint_url=moto_endpoint, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    user = iam.create_user(UserName=f"host-{host}")["User"]
    key = iam.create_access_key(UserName=f"host-{host}")["AccessKey"]
    return user["Arn"], {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}


HOST_ROLE = "gantry-hosts"


def host_role(moto_endpoint):
    """One IAM role for simulated hosts, each in a session named for it; returns the
    role's id (a host's reports carry SenderId `<role id>:<host>`)."""
    import boto3

    iam = boto3.client("iam", endpoint_url=moto_endpoint, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    return iam.create_role(RoleName=HOST_ROLE, AssumeRolePolicyDocument="{}")["Role"]["RoleId"]


def session_arn(host):
    return f"arn:aws:sts::123456789012:assumed-role/{HOST_ROLE}/{host}"
