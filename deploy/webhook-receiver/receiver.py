#!/usr/bin/env python3
"""A tiny webhook receiver for docker-compose.yml and local trials (Python stdlib only).

POST any path: the request is logged (method, path, webhook-id, body) as one JSON line on
stdout and to RECEIVER_LOG (default /data/webhooks.jsonl) and answered 204. GET /healthz
answers 200; GET /received answers the JSON lines received so far (newest last, at most
1000). Set RECEIVER_FAIL_EVERY=N to answer 503 to every Nth delivery, to watch retries.
"""
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG_PATH = os.environ.get("RECEIVER_LOG", "/data/webhooks.jsonl")
FAIL_EVERY = int(os.environ.get("RECEIVER_FAIL_EVERY", "0") or 0)
PORT = int(os.environ.get("RECEIVER_PORT", "8080"))
MAX_BODY = 4 << 20
received = []
lock = threading.Lock()
count = 0


class Handler(BaseHTTPRequestHandler):
    server_version = "polaris-bridge-receiver/1"

    def _answer(self, status, body=b"", content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self):
        if self.path == "/healthz":
            self._answer(200, b"ok\n", "text/plain")
        elif self.path == "/received":
            with lock:
                body = json.dumps(received[-1000:]).encode()
            self._answer(200, body)
        else:
            self._answer(404, b'{"error":"not found"}')

    def do_POST(self):
        global count
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._answer(413, b'{"error":"too large"}')
            return
        body = self.rfile.read(length)
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = body.decode("utf-8", "replace")
        entry = {
            "received_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "path": self.path,
            "webhook_id": self.headers.get("webhook-id"),
            "webhook_timestamp": self.headers.get("webhook-timestamp"),
            "content_type": self.headers.get("Content-Type"),
            "body": parsed,
        }
        with lock:
            count += 1
            failing = FAIL_EVERY > 0 and count % FAIL_EVERY == 0
            if not failing:
                received.append(entry)
                del received[:-1000]
                line = json.dumps(entry)
                print(line, flush=True)
                try:
                    with open(LOG_PATH, "a", encoding="utf-8") as f:
                        f.write(line + "\n")
                except OSError:
                    pass
        if failing:
            self._answer(503, b'{"error":"failing on purpose (RECEIVER_FAIL_EVERY)"}')
        else:
            self._answer(204)

    def log_message(self, fmt, *args):
        sys.stderr.write("receiver: " + (fmt % args) + "\n")


if __name__ == "__main__":
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    print(f"receiver: listening on :{PORT}, logging to {LOG_PATH}", file=sys.stderr, flush=True)
    server.serve_forever()
