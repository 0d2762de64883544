#!/usr/bin/env python3
"""Holds idle and slowloris connections against an HTTP(S) listener and times requests meanwhile.

  listener_load.py --port P [--tls CA_FILE] [--idle 2000] [--slow 500] [--hold 30] [--pid PID]

Idle connections connect and send nothing (with --tls: not even a ClientHello). Slowloris
connections (with --tls: after a finished handshake) send `GET /metrics HTTP/1.1\\r\\nHost: x\\r\\n`
one byte every 5 s and never finish the head. For --hold seconds, /metrics and /-/healthy are
requested every 100 ms on fresh connections, each timed by curl. Prints one JSON object: latencies (max,
p50, p99) and failures per path, how many of the held connections the server had closed by the
end, and the server's descriptor count (/proc/PID/fd) before, under load and after.
"""
import argparse
import json
import os
import select
import socket
import ssl
import subprocess
import threading
import time

HEAD = b"GET /metrics HTTP/1.1\r\nHost: x\r\n"


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd")) if pid else None


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setblocking(True)
    return s


def closed_by_peer(sock):
    """True if the server has closed the connection (EOF or reset), without blocking."""
    raw = sock
    try:
        p = select.poll()
        p.register(raw.fileno(), select.POLLIN)
        if not p.poll(0):
            return False
        if isinstance(sock, ssl.SSLSocket):
            sock.setblocking(False)
            try:
                data = sock.recv(1)
            except ssl.SSLWantReadError:
                return False
            return data == b""
        return raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (ConnectionError, OSError, ssl.SSLError):
        return True


def timed_get(port, path, ca):
    """One GET on a fresh connection, timed by curl itself (time_total: connect, TLS handshake,
    request, whole answer), so the client's own cost does not count against the server."""
    scheme = "https" if ca else "http"
    cmd = ["curl", "-s", "-o", "/dev/null", "--max-time", "10", "-w", "%{http_code} %{time_total}",
           "--resolve", f"localhost:{port}:127.0.0.1",
           f"{scheme}://localhost:{port}{path}"]
    if ca:
        cmd[1:1] = ["--cacert", ca]
    r = subprocess.run(cmd, capture_output=True, text=True)
    try:
        code, secs = r.stdout.split()
        return int(code), float(secs) * 1000
    except ValueError:
        return 0, 10000.0


def pct(values, q):
    if not values:
        return None
    v = sorted(values)
    return round(v[min(len(v) - 1, int(q * len(v)))], 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tls", help="CA file: speak TLS (server name localhost)")
    ap.add_argument("--idle", type=int, default=2000)
    ap.add_argument("--slow", type=int, default=500)
    ap.add_argument("--hold", type=float, default=30)
    ap.add_argument("--pid", type=int)
    args = ap.parse_args()

    ctx = None
    if args.tls:
        ctx = ssl.create_default_context(cafile=args.tls)
    out = {"fds_before": fds(args.pid)}
    idle = [connect(args.port) for _ in range(args.idle)]
    slow = []
    for _ in range(args.slow):
        s = connect(args.port)
        slow.append(ctx.wrap_socket(s, server_hostname="localhost") if ctx else s)
    stop = threading.Event()

    def trickle():
        pos = 0
        while not stop.is_set():
            for s in slow:
                try:
                    s.send(HEAD[pos:pos + 1])
                except (OSError, ssl.SSLError):
                    pass
            pos = (pos + 1) % len(HEAD)
            stop.wait(5)

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    time.sleep(0.5)
    out["fds_under_load"] = fds(args.pid)
    times = {"/metrics": [], "/-/healthy": []}
    failures = {"/metrics": 0, "/-/healthy": 0}
    end = time.monotonic() + args.hold
    while time.monotonic() < end:
        for path in times:
            status, ms = timed_get(args.port, path, args.tls)
            times[path].append(ms)
            failures[path] += status != 200
        time.sleep(0.1)
    stop.set()
    t.join()
    out["idle_closed_by_server"] = sum(closed_by_peer(s) for s in idle)
    out["slow_closed_by_server"] = sum(closed_by_peer(s) for s in slow)
    for s in idle + slow:
        try:
            s.close()
        except OSError:
            pass
    for path in times:
        key = path.strip("/").replace("-/", "")
        out[key] = {"requests": len(times[path]), "failed": failures[path],
                    "max_ms": pct(times[path], 1.0), "p99_ms": pct(times[path], 0.99),
                    "p50_ms": pct(times[path], 0.5)}
    deadline = time.monotonic() + 10
    while args.pid and time.monotonic() < deadline and fds(args.pid) > out["fds_before"]:
        time.sleep(0.1)
    out["fds_after"] = fds(args.pid)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
