#!/usr/bin/env python3
"""lb-app's server: GET /health answers 200, GET / answers this revision's version.

    server.py ADDRESS PORT VERSION_FILE PID_FILE

Writes its pid to PID_FILE once it listens. SIGTERM stops it after the requests in
flight are answered.
"""

import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

address, port, version_file, pid_file = sys.argv[1:5]
with open(version_file) as f:
    version = f.read().strip()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/health":
            status, body = 200, b"ok\n"
        elif self.path == "/":
            status, body = 200, f"{version}\n".encode()
        else:
            status, body = 404, b"not found\n"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        # One request per connection: nothing idles open when the server is stopped.
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for the requests in flight
    request_queue_size = 64


server = Server((address, int(port)), Handler)
# shutdown() waits for serve_forever() to return, so it cannot run in the handler.
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
with open(pid_file + ".tmp", "w") as out:
    out.write(f"{os.getpid()}\n")
os.replace(pid_file + ".tmp", pid_file)
server.serve_forever()
server.server_close()
