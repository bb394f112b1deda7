#!/usr/bin/env python3
"""registry_standin.py: a local stand-in for a Confluent Schema Registry,
for tests. It speaks the part of the REST API unlearnd uses, on 127.0.0.1
only, and keeps everything in memory:

  GET  /schemas/ids/{id}               200 {"schema": "..."} | 404 40403
  POST /subjects/{subject}/versions    200 {"id": N} (the same id for a schema
                                       registered before) | 422 42201 bad schema
  GET  /subjects                       200 ["subject", ...]

Options:
  --port-file PATH   bind an ephemeral port and write it to PATH (required)
  --log PATH         append "METHOD PATH" for every request (to count lookups)
  --user U --password P
                     require HTTP basic auth (401 40101 otherwise)
  --first-id N       the first id handed out (default 1)

It runs until killed (SIGTERM). Errors use the registry's JSON shape:
{"error_code": N, "message": "..."}."""
import argparse
import base64
import json
import os
import re
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CT = "application/vnd.schemaregistry.v1+json"


class State:
    def __init__(self, first_id):
        self.lock = threading.Lock()
        self.next_id = first_id
        self.by_id = {}       # id -> schema text as registered
        self.by_canon = {}    # canonical JSON -> id
        self.subjects = {}    # subject -> [ids]

    def register(self, subject, text):
        canon = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
        with self.lock:
            sid = self.by_canon.get(canon)
            if sid is None:
                sid = self.next_id
                self.next_id += 1
                self.by_canon[canon] = sid
                self.by_id[sid] = text
            versions = self.subjects.setdefault(subject, [])
            if sid not in versions:
                versions.append(sid)
            return sid


def make_handler(state, opts):
    want_auth = None
    if opts.user is not None:
        token = base64.b64encode(f"{opts.user}:{opts.password or ''}".encode()).decode()
        want_auth = "Basic " + token

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet on stderr
            pass

        def reply(self, status, obj):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", CT)
            self.send_header("Content-Length", str(len(body)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="registry"')
            self.end_headers()
            self.wfile.write(body)

        def error(self, status, code, message):
            self.reply(status, {"error_code": code, "message": message})

        def note(self):
            if opts.log:
                with state.lock, open(opts.log, "a") as f:
                    f.write(f"{self.command} {self.path}\n")

        def authorised(self):
            if want_auth is None or self.headers.get("Authorization") == want_auth:
                return True
            self.error(401, 40101, "Unauthorized")
            return False

        def do_GET(self):
            self.note()
            if not self.authorised():
                return
            m = re.fullmatch(r"/schemas/ids/(\d+)", self.path)
            if m:
                sid = int(m.group(1))
                with state.lock:
                    text = state.by_id.get(sid)
                if text is None:
                    self.error(404, 40403, f"Schema {sid} not found")
                else:
                    self.reply(200, {"schema": text})
            elif self.path == "/subjects":
                with state.lock:
                    self.reply(200, sorted(state.subjects))
            else:
                self.error(404, 404, "Not Found")

        def do_POST(self):
            self.note()
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if not self.authorised():
                return
            m = re.fullmatch(r"/subjects/([^/]+)/versions", self.path)
            if not m:
                self.error(404, 404, "Not Found")
                return
            try:
                text = json.loads(raw)["schema"]
                sid = state.register(m.group(1), text)
            except (ValueError, KeyError, TypeError):
                self.error(422, 42201, "Invalid schema")
                return
            self.reply(200, {"id": sid})

    return Handler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--first-id", type=int, default=1)
    opts = ap.parse_args()
    state = State(opts.first_id)
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state, opts))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    tmp = opts.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, opts.port_file)  # readers never see a half-written file
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
