"""An instance metadata service (IMDSv2 only) for one simulated EC2 instance.

Run by tests/fleet_runner.py, one per instance, at the instance's loopback address (see
`addresses`) and the runner's metadata port. As EC2's with HttpTokens=required:
- `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds` (1 to 21600)
  answers a token; every GET needs it in `X-aws-ec2-metadata-token` (401 otherwise, or
  once it has expired);
- `/latest/meta-data/` instance-id, ami-id, instance-type, local-ipv4, hostname,
  placement/availability-zone, placement/region, mac;
  `/latest/dynamic/instance-identity/document`;
- `/latest/meta-data/iam/security-credentials/` names the instance profile's role and
  `.../<role>` answers credentials: the role assumed through the stand-in's STS with the
  instance id as session name, as EC2 does, so SQS gives `AROA...:i-...` as SenderId.
  No role, no such path (404).
"""

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_TTL = 21600


class Instance:
    """What the service tells: one instance, described as DescribeInstances does."""

    def __init__(self, described, region, credentials=None):
        self.described = described
        self.region = region
        # A callable answering the role's credentials (dict) or None.
        self.credentials = credentials
        self.role_name = None

    def path(self, path):
        """(status, content type, body) for a GET of `path`."""
        d = self.described
        zone = d["Placement"]["AvailabilityZone"]
        meta = {
            "instance-id": d["InstanceId"],
            "ami-id": d.get("ImageId", ""),
            "instance-type": d.get("InstanceType", ""),
            "local-ipv4": d.get("PrivateIpAddress", ""),
            "hostname": d.get("PrivateDnsName", ""),
            "mac": (d.get("NetworkInterfaces") or [{}])[0].get("MacAddress", ""),
            "placement/availability-zone": zone,
            "placement/region": self.region,
        }
        if path.startswith("/latest/meta-data/"):
            key = path[len("/latest/meta-data/"):]
            if key in meta:
                return 200, "text/plain", meta[key]
            if key == "":
                return 200, "text/plain", "\n".join(sorted({k.split("/")[0] + ("/" if "/" in k else "") for k in meta}
                                                           | ({"iam/"} if self.role_name else set())))
            if self.role_name and key in ("iam/security-credentials", "iam/security-credentials/"):
                return 200, "text/plain", self.role_name
            if self.role_name and key == f"iam/security-credentials/{self.role_name}":
                return 200, "application/json", json.dumps(self.credentials())
        if path == "/latest/dynamic/instance-identity/document":
            launched = d.get("LaunchTime")
            document = {
                "accountId": d.get("OwnerId", "123456789012"),
                "architecture": "x86_64",
                "availabilityZone": zone,
                "imageId": d.get("ImageId", ""),
                "instanceId": d["InstanceId"],
                "instanceType": d.get("InstanceType", ""),
                "pendingTime": launched.strftime("%Y-%m-%dT%H:%M:%SZ") if hasattr(launched, "strftime") else "",
                "privateIp": d.get("PrivateIpAddress", ""),
                "region": self.region,
                "version": "2017-09-30",
            }
            return 200, "application/json", json.dumps(document, indent=2)
        return 404, "text/plain", "Not Found"


class Server(ThreadingHTTPServer):
    """The metadata service of `instance` at (host, port); `stop()` ends it."""

    daemon_threads = True

    def __init__(self, host, port, instance):
        super().__init__((host, port), _Handler)
        self.instance = instance
        self.tokens = {}  # token -> monotonic expiry
        self.tokens_lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self):
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self):
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _answer(self, status, content_type, body, headers=()):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        if self.path != "/latest/api/token":
            return self._answer(404, "text/plain", "Not Found")
        try:
            ttl = int(self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", ""))
        except ValueError:
            return self._answer(400, "text/plain", "Bad Request")
        if not 1 <= ttl <= MAX_TTL:
            return self._answer(400, "text/plain", "Bad Request")
        token = secrets.token_urlsafe(32)
        with self.server.tokens_lock:
            self.server.tokens[token] = time.monotonic() + ttl
        self._answer(200, "text/plain", token, [("X-aws-ec2-metadata-token-ttl-seconds", str(ttl))])

    def do_GET(self):
        token = self.headers.get("X-aws-ec2-metadata-token")
        with self.server.tokens_lock:
            expiry = self.server.tokens.get(token)
        if expiry is None or expiry < time.monotonic():
            return self._answer(401, "text/plain", "Unauthorized")
        try:
            self._answer(*self.server.instance.path(self.path.split("?")[0]))
        except Exception as error:  # credentials STS would not give: a 500, as a broken profile
            self._answer(500, "text/plain", f"Internal Server Error: {error}")

