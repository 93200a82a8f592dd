"""A counting HTTP proxy in front of moto's S3 server: forwards every request unchanged and
appends one JSON line per request to a log (server-side request counts for the rate-limit
test and the benchmark):

    {"t": <unix seconds, float>, "method": "POST", "path": "/bucket", "query": "delete",
     "status": 200, "keys": <objects named in a DeleteObjects body, else 0>}

    python proxy.py LISTEN_PORT UPSTREAM_PORT LOG_FILE
"""

import http.client
import http.server
import json
import sys
import threading
import time

LOCK = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward(self):
        body = self._body()
        headers = {k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        conn = http.client.HTTPConnection("127.0.0.1", self.server.upstream, timeout=120)
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        path, _, query = self.path.partition("?")
        entry = {
            "t": time.time(),
            "method": self.command,
            "path": path,
            "query": query,
            "status": resp.status,
            "keys": body.count(b"<Key>") if self.command == "POST" and "delete" in query else 0,
        }
        with LOCK:
            self.server.log.write(json.dumps(entry) + "\n")
            self.server.log.flush()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                self.send_header(k, v)
        if self.command == "HEAD":
            self.send_header("Content-Length", resp.getheader("Content-Length", "0"))
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward


def main():
    listen, upstream, log = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", listen), Handler)
    server.daemon_threads = True
    server.upstream = upstream
    server.log = open(log, "a", buffering=1)
    server.serve_forever()


if __name__ == "__main__":
    main()
