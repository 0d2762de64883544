#!/usr/bin/env python3
"""Stand-ins for the platform's web services in the incident drill (tests/drill/README.md).

One process per service, so that one service's server can be stopped and restarted alone:

  standin.py SERVICE --port P --state DIR [--pg HOST:PORT:DB:USER] [--upstream P [--upstream-mgmt P --mgmt-port P]]

SERVICE is nextcloud, moodle, gitea, collabora, nexus or keycloak-gate. Each answers with the
shapes of tests/fixtures/presets (the real services' bodies, documented there) and checks its
real dependency on every request: a `SELECT 1` on the drill's PostgreSQL through psql (password
from the environment variable PGPASSWORD). What each does when the dependency fails is the
table in README.md.

The drill switches a service's behaviour without restarting it through DIR/SERVICE.mode (read
on every request): empty = normal, `maintenance`, `upgrade`, `slow SECONDS`, `error`.
"""
import argparse
import http.client
import http.server
import os
import socketserver
import subprocess
import sys
import time

PRESETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "presets")


def preset(path):
    with open(os.path.join(PRESETS, path), "rb") as f:
        return f.read()


# Nextcloud: lib/base.php cannot open the database connection; status.php's own catch answers
# with the exception page of the web server's error template (no JSON). Shape in README.md.
NEXTCLOUD_DB_ERROR = b"""<!DOCTYPE html>
<html class="ng-csp" data-placeholder-focus="false" lang="en" data-locale="en" >
<head><meta charset="utf-8"><title>Nextcloud</title></head>
<body id="body-login">
<div class="wrapper"><div class="v-align">
<div class="guest-box">
<h2>Internal Server Error</h2>
<p>The server was unable to complete your request.</p>
<p>If this happens again, please send the technical details below to the server administrator.</p>
<p>More details can be found in the server log.</p>
<h3>Technical details</h3>
<ul><li>Remote Address: 10.250.2.1</li><li>Request ID: drill</li></ul>
</div></div></div>
</body></html>
"""

# Moodle: lib/setup.php cannot connect ($DB->connect throws dml_connection_exception); the
# exception handler prints the "dbconnectionfailed" error page.
MOODLE_DB_ERROR = b"""<!DOCTYPE html>
<html dir="ltr" lang="en" xml:lang="en">
<head><title>Error</title></head>
<body>
<div style="margin-top: 6em; margin-left:auto; margin-right:auto; color:#990000; text-align:center; font-size:large; border-width:1px; border-color:black; background-color:#ffffee; border-style:solid; border-radius: 20px; border-collapse: collapse; width: 80%; -moz-border-radius: 20px; padding: 15px">
<p>Error: Database connection failed</p>
<p>It is possible that the database is overloaded or otherwise not running properly.</p>
<p>The site administrator should also check that the database details have been correctly specified in config.php</p>
</div>
</body>
</html>
"""

# Keycloak (Quarkus) health/ready with its database gone: the database health check is DOWN.
KEYCLOAK_DB_DOWN = (b'{\n    "status": "DOWN",\n    "checks": [\n        {\n'
                    b'            "name": "Keycloak database connections async health check",\n'
                    b'            "status": "DOWN"\n        }\n    ]\n}')


# Keycloak's account console (the SPA's index page, trimmed), what users reach at
# /realms/REALM/account.
KEYCLOAK_ACCOUNT = b"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Account Management</title>
<script id="environment" type="application/json">{"authUrl": "/", "realm": "%s", "clientId": "account-console"}</script>
</head>
<body><div id="app"></div></body>
</html>
"""


class Stand:
    def __init__(self, args):
        self.service = args.service
        self.state = args.state
        self.pg = args.pg.split(":") if args.pg else None
        self.upstream = {args.port: args.upstream}
        if args.mgmt_port:
            self.upstream[args.mgmt_port] = args.upstream_mgmt

    def mode(self):
        try:
            with open(os.path.join(self.state, self.service + ".mode")) as f:
                return f.read().split()
        except OSError:
            return []

    def db_ok(self):
        """A real login and SELECT 1 on the drill's PostgreSQL (3 s connect timeout)."""
        host, port, db, user = self.pg
        env = dict(os.environ, PGCONNECT_TIMEOUT="3")
        try:
            r = subprocess.run(["psql", "-X", "-h", host, "-p", port, "-U", user, "-d", db,
                                "-tAc", "SELECT 1"], env=env, capture_output=True, timeout=5)
            return r.returncode == 0 and r.stdout.strip() == b"1"
        except subprocess.TimeoutExpired:
            return False

    # Each handler returns (status, content type, body, extra headers).
    def nextcloud(self, path, mode):
        if path != "/status.php":
            return 404, "text/html", b"<h1>Not Found</h1>", {}
        if not self.db_ok():
            return 503, "text/html; charset=UTF-8", NEXTCLOUD_DB_ERROR, {}
        if "maintenance" in mode:
            return 200, "application/json; charset=utf-8", preset("nextcloud/maintenance.json"), {}
        return 200, "application/json; charset=utf-8", preset("nextcloud/healthy.json"), {}

    def moodle(self, path, mode):
        if path != "/login/index.php":
            return 404, "text/html", b"<h1>Not Found</h1>", {}
        # CLI maintenance (admin/cli/maintenance.php --enable, and admin/cli/upgrade.php while it
        # runs) answers before Moodle opens the database: config.php checks climaintenance.html.
        if "maintenance" in mode or "upgrade" in mode:
            return 503, "text/html; charset=utf-8", preset("moodle/maintenance.html"), {"Retry-After": "30"}
        if not self.db_ok():
            return 503, "text/html; charset=utf-8", MOODLE_DB_ERROR, {}
        return 200, "text/html; charset=utf-8", preset("moodle/login.html"), {}

    def gitea(self, path, mode):
        if path != "/api/healthz":
            return 404, "text/plain", b"404 page not found\n", {}
        if not self.db_ok():
            return 424, "application/health+json", preset("gitea/healthz-db-fail.json"), {}
        return 200, "application/health+json", preset("gitea/healthz-pass.json"), {}

    def collabora(self, path, mode):
        # coolwsd serves discovery from its own configuration: it does not ask Nextcloud.
        if path == "/hosting/discovery":
            return 200, "text/xml", preset("collabora/discovery.xml"), {}
        if path == "/hosting/capabilities":
            return 200, "application/json", preset("collabora/capabilities.json"), {}
        return 404, "text/plain", b"", {}

    def nexus(self, path, mode):
        if path in ("/service/rest/v1/status", "/service/rest/v1/status/writable"):
            return 200, "text/plain", b"", {}
        return 404, "text/html", b"", {}

    def answer(self, handler):
        mode = self.mode()
        if mode[:1] == ["slow"]:
            time.sleep(float(mode[1]))
        if mode[:1] == ["error"]:
            return 500, "text/html", b"<html><body><h1>500 Internal Server Error</h1></body></html>", {}
        path = handler.path.split("?", 1)[0]
        return getattr(self, self.service)(path, mode)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "drill-standin"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (time.strftime("%H:%M:%S"), fmt % args))

    def send(self, status, ctype, body, headers):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def gate(self):
        """keycloak-gate: forward to the issuer; health/ready DOWN while PostgreSQL is down."""
        stand = self.server.stand
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        path = self.path.split("?", 1)[0]
        if path == "/health/ready" and not stand.db_ok():
            return self.send(503, "application/json; charset=UTF-8", KEYCLOAK_DB_DOWN, {})
        port = self.server.server_address[1]
        conn = http.client.HTTPConnection("127.0.0.1", stand.upstream[port], timeout=10)
        parts = path.strip("/").split("/")
        try:
            if len(parts) == 3 and parts[0] == "realms" and parts[2] == "account":
                # The issuer has no account console; Keycloak renders it from the realm (the
                # issuer's realm info answers whether that realm is served).
                conn.request("GET", "/realms/" + parts[1])
                r = conn.getresponse()
                r.read()
                if r.status == 200:
                    return self.send(200, "text/html;charset=utf-8", KEYCLOAK_ACCOUNT % parts[1].encode(), {})
                return self.send(404, "application/json", b'{"error":"Realm does not exist"}', {})
            hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
            conn.request(self.command, self.path, body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read()
            extra = {k: v for k, v in r.getheaders()
                     if k.lower() not in ("content-length", "content-type", "connection", "transfer-encoding", "keep-alive")}
            self.send(r.status, r.getheader("Content-Type", "application/octet-stream"), data, extra)
        except OSError:
            # Keycloak itself is gone: the connection to it is refused. Close ours the same way.
            self.close_connection = True
        finally:
            conn.close()

    def do_GET(self):
        if self.server.stand.service == "keycloak-gate":
            return self.gate()
        self.send(*self.server.stand.answer(self))

    do_POST = do_GET
    do_HEAD = do_GET


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("service", choices=["nextcloud", "moodle", "gitea", "collabora", "nexus", "keycloak-gate"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--state", required=True)
    p.add_argument("--pg")
    p.add_argument("--upstream", type=int)
    p.add_argument("--mgmt-port", type=int)
    p.add_argument("--upstream-mgmt", type=int)
    args = p.parse_args()
    stand = Stand(args)
    servers = []
    for port in [args.port] + ([args.mgmt_port] if args.mgmt_port else []):
        s = Server(("127.0.0.1", port), Handler)
        s.stand = stand
        servers.append(s)
    import threading
    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print("standin %s listening on %s" % (args.service, [s.server_address[1] for s in servers]), flush=True)
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
