"""What the stand-in's tests share: a moto server started through tests/moto_server.py on
a free loopback port (killed by pid at the end), boto3 clients for it, polling with a
deadline, and small HTTP applications on loopback addresses."""

import os
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
from botocore.config import Config

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until(condition, timeout=20, interval=0.05, what="the condition"):
    """Polls `condition` until it returns something truthy; fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {value!r})")
        time.sleep(interval)


def create_table(db, name, sort_key=True, **options):
    """A pay-per-request table keyed by string `pk` (and `sk`), as Gantry's is."""
    keys = ["pk", "sk"] if sort_key else ["pk"]
    db.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                    KeySchema=[{"AttributeName": key, "KeyType": kind} for key, kind in zip(keys, ["HASH", "RANGE"])],
                    AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"} for key in keys], **options)
    return name


class StandInTestCase(unittest.TestCase):
    """A moto server per test class."""

    @classmethod
    def setUpClass(cls):
        port = free_port()
        cls.endpoint = f"http://127.0.0.1:{port}"
        cls.server = subprocess.Popen([sys.executable, os.path.join(HERE, "moto_server.py"), "-p", str(port)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(cls.endpoint + "/moto-api/", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or cls.server.poll() is not None:
                    cls.server.kill()
                    cls.server.wait()
                    raise
                time.sleep(0.05)

    @classmethod
    def tearDownClass(cls):
        cls.server.kill()
        cls.server.wait()

    def client(self, service, key="testing", secret="testing", token=None):
        # boto3 checks AWS's minimums on the client (a 5 s health check interval): the
        # stand-in takes shorter ones, so the tests turn that check off.
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=token,
                            config=Config(parameter_validation=False))


class App:
    """An instance's application: an HTTP server on `host`:`port` answering `/health`
    with `health_status` and any other path with `name`; a path starting `/slow` sets
    `slow_started` and waits until `release` is set. Stop it with `stop()`."""

    def __init__(self, host, port, name):
        self.name = name
        self.health_status = 200
        self.release = threading.Event()
        self.slow_started = threading.Event()
        self.served = 0
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path == "/health":
                    status, body = app.health_status, b"ok"
                else:
                    if self.path.startswith("/slow"):
                        app.slow_started.set()
                        app.release.wait(30)
                    app.served += 1
                    status, body = 200, app.name.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
