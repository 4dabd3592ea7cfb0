"""Lambda functions that run: an invocation runs the function's package as a local process.

moto keeps functions, versions and aliases (with their RoutingConfig) but runs code only in
Docker, which this machine has not. Here a function's package is a zip holding a script,
and its `Handler` names that script: `handler.py` runs with this Python, `handler.sh` with
/bin/sh, anything else is executed as it is. The event arrives on stdin; what the script
prints on stdout is the response payload. A script that exits non-zero is a function error
(`X-Amz-Function-Error: Unhandled`, the payload `{"errorType": "Runtime.ExitError",
"errorMessage": ...}` with the end of its stderr), as Lambda reports a crashed runtime.

As Lambda does:
- An alias with `RoutingConfig.AdditionalVersionWeights` sends each invocation to an
  additional version with its weight's probability, else to the alias's version
  ("Implementing Lambda canary deployments using a weighted alias"); the script sees the
  version it runs as AWS_LAMBDA_FUNCTION_VERSION.
- `InvocationType: Event` answers 202 at once and runs the function in the background.
- The function's `Environment.Variables`, AWS_LAMBDA_FUNCTION_NAME, AWS_REGION and the
  stand-in's own address as AWS_ENDPOINT_URL are the process's environment; it is killed
  after the function's `Timeout` (an error, `Sandbox.Timedout`).

moto reads Invoke's qualifier from a `qualifier` parameter; the API sends `Qualifier`,
which is read here too.

Left out: runtimes, layers, the context object, concurrency limits, retries of failed
asynchronous invocations and their destinations, logs in CloudWatch.
"""

import hashlib
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import zipfile

from moto.awslambda import models as lambda_models
from moto.awslambda.responses import LambdaResponse

# Where unpacked packages are kept, by their SHA-256: one directory per package.
_packages = tempfile.mkdtemp(prefix="standin-lambda-")
_unpacking = threading.Lock()
_endpoint = {"url": None}

STDERR_TAIL = 4096


def _unpacked(fn):
    digest = hashlib.sha256(fn.code_bytes or b"").hexdigest()
    directory = os.path.join(_packages, digest)
    with _unpacking:
        if not os.path.isdir(directory):
            staging = directory + ".partial"
            with zipfile.ZipFile(io.BytesIO(fn.code_bytes)) as archive:
                archive.extractall(staging)
            os.rename(staging, directory)
    return directory


def _command(directory, handler):
    script = os.path.realpath(os.path.join(directory, handler))
    # Only a file of the package runs: never a path the Handler names outside it.
    if not script.startswith(os.path.realpath(directory) + os.sep):
        raise FileNotFoundError(f"Handler {handler!r} names a file outside the package")
    if not os.path.isfile(script):
        raise FileNotFoundError(f"the package has no {handler!r}, which Handler names")
    if handler.endswith(".py"):
        return [sys.executable, script]
    if handler.endswith(".sh"):
        return ["/bin/sh", script]
    os.chmod(script, 0o755)
    return [script]


def run(fn, event):
    """Runs `fn` with `event` (bytes): (payload bytes, error type or None)."""
    try:
        command = _command(_unpacked(fn), fn.handler or "")
    except (FileNotFoundError, zipfile.BadZipFile) as error:
        return json.dumps({"errorType": "Runtime.InvalidEntrypoint", "errorMessage": str(error)}).encode(), "Unhandled"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
           "AWS_LAMBDA_FUNCTION_NAME": fn.function_name, "AWS_LAMBDA_FUNCTION_VERSION": str(fn.version),
           "AWS_REGION": fn.region, "AWS_DEFAULT_REGION": fn.region,
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    if _endpoint["url"]:
        env["AWS_ENDPOINT_URL"] = _endpoint["url"]
    env.update({key: str(value) for key, value in (fn.environment_vars or {}).items()})
    try:
        done = subprocess.run(command, input=event, capture_output=True, env=env,
                              timeout=float(fn.timeout or 3), cwd=os.path.dirname(command[-1]))
    except subprocess.TimeoutExpired:
        message = f"Task timed out after {float(fn.timeout or 3):.2f} seconds"
        return json.dumps({"errorType": "Sandbox.Timedout", "errorMessage": message}).encode(), "Unhandled"
    if done.returncode != 0:
        tail = done.stderr[-STDERR_TAIL:].decode("utf-8", "replace")
        message = f"the handler exited with status {done.returncode}: {tail}"
        return json.dumps({"errorType": "Runtime.ExitError", "errorMessage": message}).encode(), "Unhandled"
    return done.stdout, None


def _version_for(backend, name, qualifier):
    """The version an invocation of `name` (with `qualifier`) runs: an alias's routing
    picks an additional version by its weight."""
    if ":" in name and not name.startswith("arn:"):
        name, qualifier = name.split(":", 1)
    if name.startswith("arn:"):
        parts = name.split(":")
        name, qualifier = parts[6], (parts[7] if len(parts) > 7 else qualifier)
    if not qualifier or qualifier.isdigit() or qualifier.lower() == "$latest":
        return name, qualifier
    try:
        alias = backend.get_alias(qualifier, name)
    except Exception:
        return name, qualifier
    weights = ((alias.routing_config or {}).get("AdditionalVersionWeights") or {})
    draw = random.random()
    for version, weight in weights.items():
        draw -= float(weight)
        if draw < 0:
            return name, str(version)
    return name, alias.function_version


def install(endpoint=None):
    _endpoint["url"] = endpoint

    def invoke(self, function_name, qualifier, body, headers, response_headers):
        name, chosen = _version_for(self, function_name, qualifier)
        fn = self.get_function(name, chosen)
        event = body if isinstance(body, bytes) else (body or "{}").encode()
        response_headers["x-amz-executed-version"] = str(fn.version)
        if (headers.get("X-Amz-Invocation-Type") or headers.get("x-amz-invocation-type")) == "Event":
            threading.Thread(target=run, args=(fn, event), daemon=True).start()
            response_headers["Content-Length"] = "0"
            return b""
        payload, error = run(fn, event)
        if error:
            response_headers["x-amz-function-error"] = error
        response_headers["Content-Length"] = str(len(payload))
        return payload

    lambda_models.LambdaBackend.invoke = invoke

    # moto reads Invoke's `qualifier`; the API (and every SDK) sends `Qualifier`.
    respond = LambdaResponse.invoke

    def invoke_response(self):
        if "Qualifier" in self.querystring and "qualifier" not in self.querystring:
            self.querystring["qualifier"] = self.querystring["Qualifier"]
        return respond(self)

    LambdaResponse.invoke = invoke_response
