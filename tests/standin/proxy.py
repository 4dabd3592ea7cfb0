"""A load balancer that carries traffic: an HTTP reverse proxy per ELBv2 HTTP listener.

How a client finds it: every load balancer gets a loopback port of its own when it is
created, and its DNSName (CreateLoadBalancer, DescribeLoadBalancers) is
`127.0.0.1:PORT`: `http://<DNSName>/` reaches its first HTTP listener, whatever the
listener's Port says (ports below 1024 would need root). Until that listener exists the
port refuses connections. Further HTTP listeners get other loopback ports, listed with
the first by `GET /moto-api/standin/listeners` on the moto server:
`[{"LoadBalancerArn", "ListenerArn", "Port" (the listener's), "Address": "127.0.0.1:P"}]`.

Each request goes to the next target, round robin, among the healthy registered targets
of the target groups the listener's default action forwards to (health from `health`;
if none is healthy, among all registered targets, as ALB fails open), at the target's
address (see `addresses`) and port. A target taken out (draining) gets no new request
and finishes those it has. No healthy or registered target: 503; a target that fails to
answer: 502; a `fixed-response` default action is answered as configured. Listener
rules other than the default action are not read; HTTPS and TCP listeners get no proxy;
a request body needs a Content-Length (not chunked); requests still in flight when the
deregistration delay ends are not cut.
"""

import http.client
import itertools
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from moto.elbv2 import models as elb_models
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

from . import health
from .addresses import target_host

Backend = elb_models.ELBv2Backend
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
    "transfer-encoding", "upgrade",
}
TARGET_TIMEOUT = 60  # ALB's default idle timeout

_lock = threading.Lock()
# load balancer arn -> _Balancer
_balancers = {}


def _reserve(port=0):
    """A socket bound to a loopback port but not listening: the port is ours, and
    connections to it are refused until a listener starts."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


class _Balancer:
    def __init__(self):
        self.reserved = _reserve()
        self.port = self.reserved.getsockname()[1]
        # listener arn -> _Server
        self.servers = {}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's 5 drops connections under a client loop

    def __init__(self, backend, balancer_arn, listener, sock=None):
        super().__init__(("127.0.0.1", 0), _Handler, bind_and_activate=sock is None)
        if sock is not None:
            self.socket.close()
            self.socket = sock
            self.server_address = sock.getsockname()
            self.server_activate()
        self.backend = backend
        self.balancer_arn = balancer_arn
        self.listener_arn = listener.arn
        self.listener_port = listener.port
        self.turn = itertools.count()
        self.thread = threading.Thread(target=self.serve_forever, name=f"lb-{self.server_address[1]}", daemon=True)
        self.thread.start()

    @property
    def address(self):
        return f"127.0.0.1:{self.server_address[1]}"

    def stop(self):
        self.shutdown()
        self.server_close()

    def listener(self):
        balancer = self.backend.load_balancers.get(self.balancer_arn)
        return balancer.listeners.get(self.listener_arn) if balancer else None

    def pick(self):
        """The next target as (host, port), or an answer to give instead (status, type, body)."""
        listener = self.listener()
        if listener is None or not listener.default_actions:
            return None, (503, "text/plain", "no listener")
        action = listener.default_actions[0]
        if action.type == "fixed-response":
            config = action.data.get("FixedResponseConfig", {})
            return None, (int(config.get("StatusCode", 200)), config.get("ContentType", "text/plain"),
                          config.get("MessageBody", ""))
        if action.type != "forward":
            return None, (503, "text/plain", f"the stand-in does not do {action.type} actions")
        healthy, registered = [], []
        for arn in self.backend._get_target_group_arns_from(action.data):
            target_group = self.backend.target_groups.get(arn)
            if target_group is None:
                continue
            for target in list(target_group.targets.values()):
                host = target_host(target_group, target["Id"])
                if host is None:
                    continue
                registered.append((host, int(target["Port"])))
                if health.state_of(target_group, target["Id"]) == "healthy":
                    healthy.append((host, int(target["Port"])))
        candidates = healthy or registered
        if not candidates:
            return None, (503, "text/html", "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>")
        return candidates[next(self.turn) % len(candidates)], None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _answer(self, status, content_type, body, headers=()):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _proxy(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        target, answer = self.server.pick()
        if target is None:
            return self._answer(*answer)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        forwarded = self.headers.get("X-Forwarded-For")
        client = self.client_address[0]
        headers["X-Forwarded-For"] = f"{forwarded}, {client}" if forwarded else client
        headers["X-Forwarded-Proto"] = "http"
        headers["X-Forwarded-Port"] = str(self.server.listener_port)
        connection = http.client.HTTPConnection(*target, timeout=TARGET_TIMEOUT)
        try:
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except socket.timeout:
            return self._answer(504, "text/html", "<html><body><h1>504 Gateway Time-out</h1></body></html>")
        except (OSError, http.client.HTTPException):
            return self._answer(502, "text/html", "<html><body><h1>502 Bad Gateway</h1></body></html>")
        finally:
            connection.close()
        passed = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP | {"content-length"}]
        self._answer(response.status, None, data, passed)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _proxy


# --- moto, patched -------------------------------------------------------------------

_create_load_balancer = Backend.create_load_balancer
_delete_load_balancer = Backend.delete_load_balancer
_create_listener = Backend.create_listener
_delete_listener = Backend.delete_listener
_dispatch = DomainDispatcherApplication.__call__


def _created_load_balancer(self, *args, **kwargs):
    balancer = _create_load_balancer(self, *args, **kwargs)
    entry = _Balancer()
    with _lock:
        _balancers[balancer.arn] = entry
    balancer.dns_name = f"127.0.0.1:{entry.port}"
    return balancer


def _created_listener(self, load_balancer_arn, protocol, *args, **kwargs):
    listener = _create_listener(self, load_balancer_arn, protocol, *args, **kwargs)
    with _lock:
        entry = _balancers.get(load_balancer_arn)
        if entry is not None and listener.protocol == "HTTP":
            # The first HTTP listener takes the port in the DNS name.
            sock, entry.reserved = entry.reserved, None
            entry.servers[listener.arn] = _Server(self, load_balancer_arn, listener, sock)
    return listener


def _deleted_listener(self, listener_arn):
    listener = _delete_listener(self, listener_arn)
    with _lock:
        entry = _balancers.get(listener.load_balancer_arn)
        server = entry.servers.pop(listener_arn, None) if entry else None
    if server is not None:
        server.stop()
        if server.server_address[1] == entry.port:
            try:
                entry.reserved = _reserve(entry.port)
            except OSError:  # taken meanwhile: the DNS name answers no more
                pass
    return listener


def _deleted_load_balancer(self, arn):
    _delete_load_balancer(self, arn)
    with _lock:
        entry = _balancers.pop(arn, None)
    if entry is not None:
        for server in entry.servers.values():
            server.stop()
        if entry.reserved is not None:
            entry.reserved.close()


def reset():
    """moto's reset forgot every load balancer: their proxies stop and free their ports."""
    with _lock:
        entries = list(_balancers.values())
        _balancers.clear()
    for entry in entries:
        for server in entry.servers.values():
            server.stop()
        if entry.reserved is not None:
            entry.reserved.close()


def listeners():
    """What `GET /moto-api/standin/listeners` answers."""
    with _lock:
        return [
            {"LoadBalancerArn": server.balancer_arn, "ListenerArn": arn, "Port": server.listener_port,
             "Address": server.address}
            for entry in _balancers.values()
            for arn, server in entry.servers.items()
        ]


def _dispatch_standin(self, environ, start_response):
    if environ.get("PATH_INFO") == "/moto-api/standin/listeners" and environ.get("REQUEST_METHOD") == "GET":
        body = json.dumps(listeners()).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    return _dispatch(self, environ, start_response)


def install():
    global _dispatch
    Backend.create_load_balancer = _created_load_balancer
    Backend.delete_load_balancer = _deleted_load_balancer
    Backend.create_listener = _created_listener
    Backend.delete_listener = _deleted_listener
    _dispatch = DomainDispatcherApplication.__call__
    DomainDispatcherApplication.__call__ = _dispatch_standin
