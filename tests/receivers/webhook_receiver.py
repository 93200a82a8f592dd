#!/usr/bin/env python3
"""A webhook receiver for the integration tests: Python 3 standard library only, so that it
verifies Standard Webhooks signatures independently of the connector's Rust code.

Every POST is recorded as one JSON line in --log, written before the response is sent:
  {"t": arrival (unix seconds, float), "id": webhook-id, "timestamp": webhook-timestamp,
   "verified": bool, "error": why verification failed or null, "status": the answer,
   "attempt": how many times this webhook-id arrived (1 = first), "headers": {...},
   "body": the raw body as text}

Modes (--mode), per webhook-id unless said otherwise:
  ok            200 to every verified request
  flaky         500 to the first --k attempts, then 200
  throttle      429 with `Retry-After: --retry-after` to the first attempt, then 200
  slow          sleeps --delay seconds before answering the first attempt (200), then fast
  gone          410 to everything
  bad           400 with a body naming the problem, to everything
A request whose signature does not verify is answered 401, whatever the mode.
--start-after S binds the port only after S seconds (connection refused until then).
--delay-all S sleeps S seconds before every answer.
--tls-cert FILE --tls-key FILE serve HTTPS with this certificate chain and key.

  python3 webhook_receiver.py --self-test    checks the specification's reference vector
"""

import argparse
import base64
import hashlib
import hmac
import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_SECONDS = 5 * 60


def secret_key(secret):
    """The HMAC key of a `whsec_` secret: the base64-decoded part after the prefix."""
    if not secret.startswith("whsec_"):
        raise ValueError("secret does not start with whsec_")
    return base64.b64decode(secret[len("whsec_"):])


def sign(key, msg_id, timestamp, body):
    """`v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))."""
    content = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(keys, headers, body, now=None):
    """Returns None when the request verifies, else the reason it does not."""
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not timestamp or not signatures:
        return "missing webhook-id, webhook-timestamp or webhook-signature"
    try:
        ts = int(timestamp)
    except ValueError:
        return "webhook-timestamp is not an integer"
    now = time.time() if now is None else now
    if abs(now - ts) > TOLERANCE_SECONDS:
        return "timestamp outside the tolerance"
    offered = signatures.split(" ")
    for key in keys:
        expected = sign(key, msg_id, ts, body)
        for candidate in offered:
            if hmac.compare_digest(expected, candidate):
                return None
    return "no signature matches"


def self_test():
    key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    got = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    want = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    if got != want:
        print(f"reference vector: got {got}, want {want}", file=sys.stderr)
        return 1
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,bm90IGl0 " + want,
    }
    if verify([key], headers, b'{"test": 2432232314}', now=1614265330) is not None:
        print("reference request does not verify", file=sys.stderr)
        return 1
    if verify([key], headers, b'{"test": 2432232315}', now=1614265330) is None:
        print("a tampered body verifies", file=sys.stderr)
        return 1
    if verify([key], headers, b'{"test": 2432232314}', now=1614265330 + 600) is None:
        print("an old timestamp verifies", file=sys.stderr)
        return 1
    print("ok")
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int)
    parser.add_argument("--secret", action="append", default=[])
    parser.add_argument("--log")
    parser.add_argument("--mode", default="ok",
                        choices=["ok", "flaky", "throttle", "slow", "gone", "bad"])
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--retry-after", type=int, default=2)
    parser.add_argument("--delay", type=float, default=2.0)
    parser.add_argument("--delay-all", type=float, default=0.0)
    parser.add_argument("--start-after", type=float, default=0.0)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()
    if args.self_test:
        sys.exit(self_test())

    keys = [secret_key(s) for s in args.secret]
    lock = threading.Lock()
    attempts = {}
    log = open(args.log, "a", buffering=1)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive

        def log_message(self, *_):
            pass

        def do_HEAD(self):
            self.send_response(410 if args.mode == "gone" else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self):
            arrival = time.time()
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            error = verify(keys, headers, body)
            msg_id = headers.get("webhook-id", "")
            with lock:
                attempt = attempts.get(msg_id, 0) + 1
                attempts[msg_id] = attempt
            status, extra, reply, sleep = 200, {}, b"ok", args.delay_all
            if error is not None:
                status, reply = 401, error.encode()
            elif args.mode == "flaky" and attempt <= args.k:
                status, reply = 500, b"flaky: failing on purpose"
            elif args.mode == "throttle" and attempt == 1:
                status, reply = 429, b"slow down"
                extra["Retry-After"] = str(args.retry_after)
            elif args.mode == "slow" and attempt == 1:
                sleep += args.delay
            elif args.mode == "gone":
                status, reply = 410, b"this endpoint is gone"
            elif args.mode == "bad":
                status, reply = 400, b'{"error": "schema mismatch: field subject is not accepted"}'
            record = {
                "t": arrival,
                "id": msg_id,
                "timestamp": headers.get("webhook-timestamp"),
                "verified": error is None,
                "error": error,
                "status": status,
                "attempt": attempt,
                "headers": headers,
                "body": body.decode("utf-8", "replace"),
            }
            with lock:
                log.write(json.dumps(record) + "\n")
            if sleep:
                time.sleep(sleep)
            try:
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)
            except (BrokenPipeError, ConnectionResetError):
                pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True

        def handle_error(self, request, client_address):
            pass  # a client that went away (the bridge killed with -9) is expected

    if args.start_after:
        time.sleep(args.start_after)
    server = Server(("127.0.0.1", args.port), Handler)
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print("listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
