#!/usr/bin/env python3
"""A stand-in for Apache Polaris's Notification API, for the polaris-notify tests.

Behaves as the Iceberg REST spec (Polaris's catalog API) and Polaris's implementation
describe (shared/reference/polaris.md section 3):

- POST {base}/v1/oauth/tokens: OAuth2 client credentials (form body). A wrong client id or
  secret answers 401 {"error": "invalid_client"}. Tokens expire after --token-ttl seconds;
  the response advertises --advertised-ttl (default: the same), so a test can make the
  client believe a token is still valid when the server already rejects it.
- POST {base}/v1/{prefix}/namespaces/{namespace}/tables/{table}/notifications, with a bearer
  token (else 401, Iceberg error model). {prefix} is the catalog name; namespace levels are
  separated by %1F. Answers:
  - unknown catalog: 404 NoSuchCatalogException;
  - a catalog that is not EXTERNAL: 400 "Cannot update internal catalog via notifications";
  - a malformed body: 400 BadRequestException;
  - a metadata location outside the catalog's allowed locations: 403 ForbiddenException;
  - VALIDATE: the checks above only, a dry run: 204, nothing changes;
  - CREATE / UPDATE: 409 AlreadyExistsException unless the timestamp is strictly newer than the
    table's last admitted one; else the table is created or updated (namespaces are created as
    needed): 204;
  - DROP: no timestamp check; 404 NoSuchTableException when the table is not there; else the
    table entity is removed with its last admitted timestamp (the files stay): 204.
- GET {base}/v1/{prefix}/namespaces/{namespace}/tables/{table} (loadTable), with a bearer
  token (else 401): 200 with a LoadTableResult (metadata-location, and metadata with
  format-version, table-uuid and location, the directory above metadata/) for a table the
  server has, else 404 NoSuchTableException.
- GET /state: the tables (for tests).

Every request is appended as one JSON line to --log: time, method, path, status, catalog,
namespace, table, notification type, timestamp, token. Tables are kept in --state (JSON) and
written after every change, so a restarted server keeps them (tokens are not kept: a
restarted server answers 401 to old tokens, as Polaris does after its signing key changes).

Prints "LISTENING <port>" on stdout once it accepts connections.
"""

import argparse
import json
import os
import secrets
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()


def error_body(status, kind, message):
    return {"error": {"message": message, "type": kind, "code": status}}


class State:
    def __init__(self, args):
        self.args = args
        self.tokens = {}  # token -> expiry (monotonic)
        self.catalogs = {}  # name -> {"type": ..., "allowed": [...]}
        for spec in args.catalog:
            # name:TYPE[:allowed,prefixes]
            parts = spec.split(":", 2)
            allowed = parts[2].split(",") if len(parts) > 2 and parts[2] else []
            self.catalogs[parts[0]] = {"type": parts[1].upper(), "allowed": allowed}
        self.tables = {}
        if args.state and os.path.exists(args.state):
            with open(args.state) as f:
                self.tables = json.load(f)

    def save(self):
        if not self.args.state:
            return
        tmp = self.args.state + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.tables, f, indent=1, sort_keys=True)
        os.replace(tmp, self.args.state)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "PolarisNotificationStub/1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def record(self, status, **fields):
        entry = {
            "time": time.time(),
            "method": self.command,
            "path": self.path,
            "status": status,
        }
        entry.update(fields)
        with open(self.server.args.log, "a") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")

    def reply(self, status, body=None, **fields):
        self.record(status, **fields)
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def token_expired(self):
        auth = self.headers.get("Authorization") or ""
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
        with LOCK:
            expiry = self.server.state.tokens.get(token)
        return token, expiry is None or time.monotonic() >= expiry

    def do_GET(self):
        if self.path == "/state":
            with LOCK:
                tables = dict(self.server.state.tables)
            return self.reply(200, tables)
        base = self.server.args.base.rstrip("/")
        path = urllib.parse.urlsplit(self.path).path
        prefix = base + "/v1/"
        parts = path[len(prefix):].split("/") if path.startswith(prefix) else []
        if len(parts) == 5 and parts[1] == "namespaces" and parts[3] == "tables":
            catalog = urllib.parse.unquote(parts[0])
            namespace = urllib.parse.unquote(parts[2]).split("\x1f")
            table = urllib.parse.unquote(parts[4])
            return self.load_table(catalog, namespace, table)
        self.reply(404, error_body(404, "NotFoundException", "no such route"))

    def load_table(self, catalog, namespace, table):
        token, expired = self.token_expired()
        fields = {"catalog": catalog, "namespace": namespace, "table": table, "kind": "loadTable",
                  "token": token, "realm": self.headers.get("Polaris-Realm")}
        if expired:
            return self.reply(
                401,
                error_body(401, "NotAuthorizedException", "Not authorized: token missing or expired"),
                **fields,
            )
        key = catalog + "/" + "\x1f".join(namespace) + "/" + table
        with LOCK:
            current = self.server.state.tables.get(key)
        if current is None:
            return self.reply(
                404,
                error_body(404, "NoSuchTableException", f"Table does not exist: {'.'.join(namespace + [table])}"),
                **fields,
            )
        location = current["metadata_location"]
        base_location = location.rsplit("/metadata/", 1)[0]
        self.reply(
            200,
            {
                "metadata-location": location,
                "metadata": {
                    "format-version": 2,
                    "table-uuid": current["table_uuid"],
                    "location": base_location,
                    "last-updated-ms": current["last_timestamp"],
                },
                "config": {},
            },
            **fields,
        )

    def do_POST(self):
        base = self.server.args.base.rstrip("/")
        path = urllib.parse.urlsplit(self.path).path
        raw = self.body()
        if path == base + "/v1/oauth/tokens":
            return self.token(raw)
        prefix = base + "/v1/"
        parts = path[len(prefix):].split("/") if path.startswith(prefix) else []
        if (
            len(parts) == 6
            and parts[1] == "namespaces"
            and parts[3] == "tables"
            and parts[5] == "notifications"
        ):
            catalog = urllib.parse.unquote(parts[0])
            namespace = urllib.parse.unquote(parts[2]).split("\x1f")
            table = urllib.parse.unquote(parts[4])
            return self.notification(catalog, namespace, table, raw)
        self.reply(404, error_body(404, "NotFoundException", "no such route"))

    def token(self, raw):
        form = urllib.parse.parse_qs(raw.decode())
        args = self.server.args
        first = lambda k: (form.get(k) or [""])[0]  # noqa: E731
        if first("grant_type") != "client_credentials":
            return self.reply(400, {"error": "unsupported_grant_type"}, kind="token")
        if first("client_id") != args.client_id or first("client_secret") != args.client_secret:
            return self.reply(401, {"error": "invalid_client"}, kind="token")
        token = "tok-" + secrets.token_hex(8)
        with LOCK:
            self.server.state.tokens[token] = time.monotonic() + args.token_ttl
        advertised = args.advertised_ttl if args.advertised_ttl is not None else args.token_ttl
        self.reply(
            200,
            {
                "access_token": token,
                "token_type": "bearer",
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "expires_in": int(advertised),
            },
            kind="token",
            token=token,
        )

    def notification(self, catalog, namespace, table, raw):
        state = self.server.state
        fields = {"catalog": catalog, "namespace": namespace, "table": table}
        token, expired = self.token_expired()
        fields["token"] = token
        fields["realm"] = self.headers.get("Polaris-Realm")
        if expired:
            return self.reply(
                401,
                error_body(401, "NotAuthorizedException", "Not authorized: token missing or expired"),
                **fields,
            )
        try:
            request = json.loads(raw)
            kind = request["notification-type"]
            payload = request["payload"]
            ts = payload["timestamp"]
            location = payload["metadata-location"]
            uuid = payload["table-uuid"]
            name = payload["table-name"]
            if kind not in ("CREATE", "UPDATE", "DROP", "VALIDATE") or not isinstance(ts, int):
                raise ValueError(kind)
        except (ValueError, KeyError, TypeError) as e:
            return self.reply(
                400, error_body(400, "BadRequestException", f"Malformed notification: {e!r}"), **fields
            )
        fields.update({"type": kind, "timestamp": ts, "table_uuid": uuid, "metadata_location": location})
        if name != table:
            return self.reply(
                400,
                error_body(400, "BadRequestException", f"table-name {name} does not match the path"),
                **fields,
            )
        spec = state.catalogs.get(catalog)
        if spec is None:
            return self.reply(
                404, error_body(404, "NoSuchCatalogException", f"Catalog {catalog} not found"), **fields
            )
        if spec["type"] != "EXTERNAL":
            return self.reply(
                400,
                error_body(400, "BadRequestException", "Cannot update internal catalog via notifications"),
                **fields,
            )
        if kind != "DROP" and spec["allowed"] and not any(location.startswith(p) for p in spec["allowed"]):
            return self.reply(
                403,
                error_body(
                    403,
                    "ForbiddenException",
                    f"Invalid locations '[{location}]' for identifier '{'.'.join(namespace + [table])}': "
                    "not in the list of allowed locations",
                ),
                **fields,
            )
        if kind == "VALIDATE":
            return self.reply(204, **fields)
        key = catalog + "/" + "\x1f".join(namespace) + "/" + table
        with LOCK:
            current = state.tables.get(key)
            if kind == "DROP":
                if current is None:
                    status = 404
                else:
                    del state.tables[key]
                    state.save()
                    status = 204
            elif current is not None and ts <= current["last_timestamp"]:
                status = 409
            else:
                state.tables[key] = {
                    "last_timestamp": ts,
                    "table_uuid": uuid,
                    "metadata_location": location,
                }
                state.save()
                status = 204
        if status == 409:
            return self.reply(
                409,
                error_body(
                    409,
                    "AlreadyExistsException",
                    f"A notification with timestamp {ts} is not newer than the last one admitted "
                    f"({current['last_timestamp']}) for table {'.'.join(namespace + [table])}",
                ),
                **fields,
            )
        if status == 404:
            return self.reply(
                404,
                error_body(404, "NoSuchTableException", f"Table does not exist: {'.'.join(namespace + [table])}"),
                **fields,
            )
        self.reply(204, **fields)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--base", default="/api/catalog", help="the Iceberg REST base path")
    parser.add_argument("--log", required=True, help="JSON-lines request log")
    parser.add_argument("--state", help="JSON file keeping the tables across restarts")
    parser.add_argument("--client-id", default="bridge")
    parser.add_argument("--client-secret", default="s3cret")
    parser.add_argument("--token-ttl", type=float, default=3600)
    parser.add_argument("--advertised-ttl", type=float)
    parser.add_argument(
        "--catalog",
        action="append",
        default=[],
        help="NAME:TYPE[:ALLOWED,LOCATION,PREFIXES], e.g. mirror:EXTERNAL:s3://bucket/",
    )
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.args = args
    server.state = State(args)
    print(f"LISTENING {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
