#!/usr/bin/env python3
"""The fleet drill (issue 14): three agents, two Prometheus, two clustered Alertmanagers, each in a
network namespace of its own ("one per host"), the platform behind a router namespace.

  hosts on the monitoring LAN (a bridge in the router namespace, 10.251.1.0/24):
    a1 a2 a3 (agents, .11-.13)   p1 p2 (Prometheus, .21 .22)   m1 m2 (Alertmanager, .31 .32)
    the router itself (.254): this script, with the recording webhook
  platform links: each agent has a second link to the router (10.252.N.0/24); the router
  forwards to the platform namespace (10.252.100.2): real PostgreSQL (tests/fixtures/postgres.sh)
  and the Nextcloud stand-in of tests/drill/standin.py, which fails when PostgreSQL does.

The shipped rules (alerts/*.rules.yml, with fleet.rules.yml) and routing (alerts/alertmanager.yml
with its receivers replaced by the webhook) run in real Prometheus and Alertmanager; the agents
share one configuration with a fleet: section (replicas 2). Scenarios, each checked:
  1. PostgreSQL killed: exactly one page (PesProbeDown postgres), and it resolves after restart;
  2. the same while one agent, one Prometheus and one Alertmanager are killed (SIGKILL); every
     probe is still run by a live agent;
  3. one agent's platform link cut: no page.

  fleet_drill.py --agent BIN [--keep]
"""
import argparse
import copy
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
FIX = os.path.join(REPO, "tests", "fixtures")
STANDIN = os.path.join(REPO, "tests", "drill", "standin.py")
ROUTER_IP = "10.251.1.254"
HOSTS = {"a1": "10.251.1.11", "a2": "10.251.1.12", "a3": "10.251.1.13",
         "p1": "10.251.1.21", "p2": "10.251.1.22", "m1": "10.251.1.31", "m2": "10.251.1.32"}
AGENTS = ["a1", "a2", "a3"]
PLAT_IP = "10.252.100.2"
AGENT_PORT, PROM_PORT, AM_PORT = 9469, 9090, 9093
PROM_INTERVAL = "2s"


def log(msg):
    print("[fleet-drill %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def run(argv, ns=None, check=True, env=None, timeout=120):
    if ns:
        argv = ["ip", "netns", "exec", ns] + argv
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s %s" % (" ".join(argv), r.returncode, r.stdout[-2000:], r.stderr[-2000:]))
    return r


def http(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def enter_netns(name):
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open("/run/netns/" + name, os.O_RDONLY)
    if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
        raise OSError(ctypes.get_errno(), "setns " + name)
    os.close(fd)


class Recorder:
    """The webhook every receiver is replaced by: each notification with its arrival time."""

    def __init__(self):
        self.events, self.lock, rec = [], threading.Lock(), self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with rec.lock:
                    rec.events.append({"t": time.time(), "receiver": self.path.strip("/"), "payload": json.loads(body)})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("0.0.0.0", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def pages(self, since):
        """Firing notifications to the pager receiver since `since`: (time, [alertname/probe|instance])."""
        with self.lock:
            out = []
            for e in self.events:
                p = e["payload"]
                if e["t"] >= since and e["receiver"] == "pager" and p.get("status") == "firing":
                    names = sorted("%s/%s" % (a["labels"].get("alertname"), a["labels"].get("probe") or a["labels"].get("instance"))
                                   for a in p["alerts"] if a.get("status") == "firing")
                    out.append((e["t"], names))
            return out


class Fleet:
    def __init__(self, a):
        self.a = a
        t = "%05d" % (os.getpid() % 100000)
        self.t = t
        self.ns = {h: "pesfl%s-%s" % (t, h) for h in list(HOSTS) + ["r", "plat"]}
        self.tmp = tempfile.mkdtemp(prefix="pes-fleet.")
        os.chmod(self.tmp, 0o755)
        self.procs, self.fixtures, self.ep = {}, {}, {}
        self.dead = set()  # agents killed on purpose
        self.state_dir = os.path.join(self.tmp, "state")
        os.makedirs(self.state_dir)
        os.chmod(self.state_dir, 0o777)

    # --- network ------------------------------------------------------------------------------
    def veth(self, a_ns, a_if, b_ns, b_if):
        run(["ip", "link", "add", a_if, "netns", self.ns[a_ns], "type", "veth", "peer", "name", b_if, "netns", self.ns[b_ns]])

    def addr(self, h, ifc, cidr):
        run(["ip", "-n", self.ns[h], "addr", "add", cidr, "dev", ifc])
        run(["ip", "-n", self.ns[h], "link", "set", ifc, "up"])

    def netns_up(self):
        for n in self.ns.values():
            run(["ip", "netns", "add", n])
            run(["ip", "-n", n, "link", "set", "lo", "up"])
        r, t = "r", self.t
        run(["ip", "-n", self.ns[r], "link", "add", "br0", "type", "bridge"])
        self.addr(r, "br0", ROUTER_IP + "/24")
        for h, ip in HOSTS.items():
            self.veth(h, "lan0", r, "l%s%s" % (t, h))
            run(["ip", "-n", self.ns[r], "link", "set", "l%s%s" % (t, h), "master", "br0", "up"])
            self.addr(h, "lan0", ip + "/24")
        # platform links: agent N <-> router, router <-> platform
        for i, h in enumerate(AGENTS, 1):
            self.veth(h, "plat0", r, "p%s%s" % (t, h))
            self.addr(h, "plat0", "10.252.%d.2/24" % i)
            self.addr(r, "p%s%s" % (t, h), "10.252.%d.1/24" % i)
            run(["ip", "-n", self.ns[h], "route", "add", PLAT_IP + "/32", "via", "10.252.%d.1" % i])
        self.veth("plat", "eth0", r, "pp%s" % t)
        self.addr("plat", "eth0", PLAT_IP + "/24")
        self.addr(r, "pp%s" % t, "10.252.100.1/24")
        run(["ip", "-n", self.ns["plat"], "route", "add", "10.252.0.0/16", "via", "10.252.100.1"])
        run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], ns=self.ns[r])
        # The platform's servers listen on 127.0.0.1: deliver what arrives on its link there.
        plat = self.ns["plat"]
        run(["sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"], ns=plat)
        run(["sysctl", "-qw", "net.ipv4.conf.eth0.route_localnet=1"], ns=plat)
        run(["iptables", "-t", "nat", "-A", "PREROUTING", "-i", "eth0", "-d", PLAT_IP, "-j", "DNAT",
             "--to-destination", "127.0.0.1"], ns=plat)

    def cut_platform_link(self, h):
        run(["ip", "-n", self.ns["r"], "link", "set", "p%s%s" % (self.t, h), "down"])

    def netns_down(self):
        for n in self.ns.values():
            run(["ip", "netns", "del", n], check=False)

    # --- processes ----------------------------------------------------------------------------
    def spawn(self, name, argv, ns, env=None):
        logf = open(os.path.join(self.tmp, name + ".log"), "ab")
        p = subprocess.Popen(["ip", "netns", "exec", self.ns[ns]] + argv, stdout=logf, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        self.procs[name] = p

    def kill(self, name, sig=signal.SIGKILL):
        p = self.procs.pop(name, None)
        if p and p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)

    def fixture(self, name, cmd="start", **opts):
        d = os.path.join(self.tmp, "fx-" + name)
        args = ["bash", os.path.join(FIX, name + ".sh"), cmd, d] + ["%s=%s" % kv for kv in opts.items()]
        if cmd == "start":
            args.append("OWNER_PID=%d" % os.getpid())
        r = run(args, ns=self.ns["plat"], check=(cmd != "stop"), timeout=90)
        if cmd == "start":
            self.fixtures[name] = d
        return dict(l.split("=", 1) for l in r.stdout.splitlines() if "=" in l)

    def wait(self, what, cond, secs=60, step=0.5):
        end = time.time() + secs
        while time.time() < end:
            try:
                if cond():
                    return True
            except Exception:
                pass
            time.sleep(step)
        raise RuntimeError("timed out after %ds waiting for %s" % (secs, what))

    # --- platform -----------------------------------------------------------------------------
    def start_postgres(self, port=None):
        opts = {"PORT": port} if port else {}
        pg = self.fixture("postgres", **opts)
        hba = os.path.join(self.fixtures["postgres"], "data", "pg_hba.conf")
        if "10.252.0.0/16" not in open(hba).read():
            with open(hba, "a") as f:
                f.write("host all all 10.252.0.0/16 scram-sha-256\n")
            run(["psql", "-X", "-h", "127.0.0.1", "-p", pg["PORT"], "-U", pg["ADMIN_USER"], "-d", "postgres",
                 "-tAc", "SELECT pg_reload_conf()"], ns=self.ns["plat"],
                env=dict(os.environ, PGPASSWORD=pg["ADMIN_PASSWORD"]))
        self.ep["pg"] = pg

    def start_platform(self):
        log("platform: PostgreSQL and the Nextcloud stand-in (fails when PostgreSQL does)")
        self.start_postgres()
        pg = self.ep["pg"]
        out = run(["bash", "-c", "source %s/lib.sh; fx_free_port 1" % FIX], ns=self.ns["plat"]).stdout
        self.ep["nextcloud"] = int(out.split()[0])
        self.spawn("standin-nextcloud", ["/usr/bin/python3", STANDIN, "nextcloud", "--port", str(self.ep["nextcloud"]),
                                         "--state", self.state_dir,
                                         "--pg", "127.0.0.1:%s:%s:%s" % (pg["PORT"], pg["DBNAME"], pg["USER"])],
                   "plat", env=dict(os.environ, PGPASSWORD=pg["PASSWORD"]))

    def kill_postgres(self):
        os.killpg(int(open(os.path.join(self.fixtures["postgres"], "pid")).read()), signal.SIGKILL)

    # --- agents -------------------------------------------------------------------------------
    def agent_config(self):
        pg = self.ep["pg"]
        secret = os.path.join(self.tmp, "pg_password")
        open(secret, "w").write(pg["PASSWORD"])
        nc = "http://%s:%d" % (PLAT_IP, self.ep["nextcloud"])
        probes = [
            {"name": "postgres", "service": "postgresql", "type": "postgres",
             "postgres": {"host": PLAT_IP, "port": int(pg["PORT"]), "dbname": pg["DBNAME"], "user": pg["USER"],
                          "password": "${file:%s}" % secret}},
            {"name": "nextcloud", "type": "nextcloud", "depends_on": ["postgres"], "nextcloud": {"url": nc}},
        ]
        # More probes, so that placement spreads them over the members; they stay up when
        # PostgreSQL is killed (a TCP connect to the stand-in).
        for i in range(1, 7):
            probes.append({"name": "port-%d" % i, "service": "nextcloud", "type": "tcp",
                           "tcp": {"address": "%s:%d" % (PLAT_IP, self.ep["nextcloud"])}})
        return {"global": {"interval": "3s", "timeout": "2s", "failure_threshold": 2, "labels": {"platform": "pes"}},
                "fleet": {"replicas": 2, "members": [{"name": h, "location": "dc1"} for h in AGENTS]},
                "probes": probes}

    def start_agent(self, h):
        self.spawn("agent-" + h, [self.a.agent, "--config.file=" + self.agent_cfg, "--agent.name=" + h,
                                  "--web.listen-address=0.0.0.0:%d" % AGENT_PORT], h)

    def start_agents(self):
        self.agent_cfg = os.path.join(self.tmp, "agent.yml")
        yaml.safe_dump(self.agent_config(), open(self.agent_cfg, "w"), sort_keys=False)
        run([self.a.agent, "check-config", self.agent_cfg])
        for h in AGENTS:
            self.start_agent(h)
        for h in AGENTS:
            self.wait("agent " + h, lambda: http("http://%s:%d/-/ready" % (HOSTS[h], AGENT_PORT))[0] == 200, 30)
        st = json.loads(http("http://%s:%d/api/v1/status" % (HOSTS["a1"], AGENT_PORT))[1])
        self.placement = {e["probe"]: e["members"] for e in st["fleet"]["placement"]}
        log("placement: %s" % self.placement)
        for h in AGENTS:  # every member computes the same placement
            other = json.loads(http("http://%s:%d/api/v1/status" % (HOSTS[h], AGENT_PORT))[1])
            if {e["probe"]: e["members"] for e in other["fleet"]["placement"]} != self.placement:
                raise AssertionError("agent %s computes another placement" % h)

    # --- monitoring ---------------------------------------------------------------------------
    def monitoring_configs(self):
        self.rec = Recorder()
        rules = os.path.join(self.tmp, "rules")
        shutil.copytree(os.path.join(REPO, "alerts"), rules)
        am = yaml.safe_load(open(os.path.join(REPO, "alerts", "alertmanager.yml")))
        for r in am["receivers"]:
            confs = [k for k in r if k.endswith("_configs")]
            if confs:
                send_resolved = all(c.get("send_resolved", False) for k in confs for c in r[k])
                for k in confs:
                    del r[k]
                r["webhook_configs"] = [{"url": "http://%s:%d/%s" % (ROUTER_IP, self.rec.port, r["name"]),
                                         "send_resolved": send_resolved}]
        am.get("global", {}).pop("smtp_auth_password_file", None)
        self.am_cfg = os.path.join(self.tmp, "alertmanager.yml")
        yaml.safe_dump(am, open(self.am_cfg, "w"), sort_keys=False)
        run(["amtool", "check-config", self.am_cfg])
        self.prom_cfg = {}
        for i, p in enumerate(("p1", "p2")):
            cfg = {"global": {"scrape_interval": PROM_INTERVAL, "scrape_timeout": "1500ms",
                              "evaluation_interval": PROM_INTERVAL, "external_labels": {"replica": "ab"[i]}},
                   "alerting": {"alert_relabel_configs": [{"action": "labeldrop", "regex": "replica"}],
                                "alertmanagers": [{"static_configs": [{"targets": ["%s:%d" % (HOSTS[m], AM_PORT) for m in ("m1", "m2")]}]}]},
                   "rule_files": [os.path.join(rules, "*.rules.yml")],
                   "scrape_configs": [{"job_name": "pes-agent", "static_configs": [
                       {"targets": ["%s:%d" % (HOSTS[h], AGENT_PORT) for h in AGENTS]}]}]}
            path = os.path.join(self.tmp, "prometheus-%s.yml" % p)
            yaml.safe_dump(cfg, open(path, "w"), sort_keys=False)
            run(["promtool", "check", "config", path])
            self.prom_cfg[p] = path

    def start_alertmanager(self, m):
        peer = "m2" if m == "m1" else "m1"
        self.spawn(m, ["prometheus-alertmanager", "--config.file=" + self.am_cfg,
                       "--storage.path=" + os.path.join(self.tmp, m + "-data"),
                       "--web.listen-address=0.0.0.0:%d" % AM_PORT,
                       "--cluster.listen-address=%s:9094" % HOSTS[m], "--cluster.peer=%s:9094" % HOSTS[peer]], m)

    def start_prometheus(self, p):
        self.spawn(p, ["prometheus", "--config.file=" + self.prom_cfg[p],
                       "--storage.tsdb.path=" + os.path.join(self.tmp, p + "-data"),
                       "--web.listen-address=0.0.0.0:%d" % PROM_PORT], p)

    def start_monitoring(self):
        self.monitoring_configs()
        for m in ("m1", "m2"):
            self.start_alertmanager(m)
        for p in ("p1", "p2"):
            self.start_prometheus(p)
        for m in ("m1", "m2"):
            self.wait(m, lambda: http("http://%s:%d/-/ready" % (HOSTS[m], AM_PORT))[0] == 200, 30)
        for p in ("p1", "p2"):
            self.wait(p, lambda: http("http://%s:%d/-/ready" % (HOSTS[p], PROM_PORT))[0] == 200, 60)
        self.wait("the Alertmanager cluster", lambda: len(json.loads(
            http("http://%s:%d/api/v2/status" % (HOSTS["m1"], AM_PORT))[1])["cluster"]["peers"]) == 2, 30)

    def query(self, p, q):
        st, body = http("http://%s:%d/api/v1/query?%s" % (HOSTS[p], PROM_PORT, urllib.parse.urlencode({"query": q})))
        return json.loads(body)["data"]["result"]

    def scalar(self, p, q):
        r = self.query(p, q)
        return float(r[0]["value"][1]) if r else None

    def all_up(self, proms=("p1", "p2")):
        want = sum(len([h for h in m if h not in self.dead]) for m in self.placement.values())
        return all(self.scalar(p, 'count(probe_up == 1)') == want and
                   self.scalar(p, 'count(probe_root_cause)') == want for p in proms)

    def runs_by_live_agent(self, p):
        """Every probe of the configuration has a fresh series from some agent Prometheus scrapes."""
        r = self.query(p, 'count by (probe) (probe_up and on (instance) up{job="pes-agent"} == 1)')
        return {x["metric"]["probe"] for x in r} == set(self.placement)

    def cleanup(self):
        for name in list(self.procs):
            self.kill(name, signal.SIGTERM)
        for name in list(self.fixtures):
            self.fixture(name, "stop")
        self.netns_down()
        if not self.a.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            log("kept " + self.tmp)


def pg_killed(f, title, proms, allowed_extra=()):
    """Kills PostgreSQL, expects exactly one page (PesProbeDown/postgres), restarts it, waits for
    the resolve. Pages of `allowed_extra` (alertname/instance) are reported, not counted."""
    log("%s: killing PostgreSQL" % title)
    t0 = time.time()
    f.kill_postgres()
    f.wait("the page", lambda: any("PesProbeDown/postgres" in n for _, n in f.rec.pages(t0)), 90)
    first = min(t for t, n in f.rec.pages(t0) if "PesProbeDown/postgres" in n) - t0
    time.sleep(20)  # room for a second, doubled or per-agent page to arrive
    for p in proms:
        if not f.runs_by_live_agent(p):
            raise AssertionError("%s: a probe is run by no live agent (%s)" % (title, p))
    pages = [(t, [x for x in n if x not in allowed_extra]) for t, n in f.rec.pages(t0)]
    pages = [(t, n) for t, n in pages if n]
    log("%s: first page after %.0f s; pages: %s" % (title, first, [n for _, n in pages]))
    if [n for _, n in pages] != [["PesProbeDown/postgres"]]:
        raise AssertionError("%s: want exactly one page, PesProbeDown/postgres; got %s" % (title, [n for _, n in pages]))
    log("%s: restarting PostgreSQL" % title)
    f.start_postgres(port=f.ep["pg"]["PORT"])
    f.wait("every probe up again", lambda: f.all_up(proms), 90)
    f.wait("the page to resolve", lambda: not [a for a in json.loads(http("http://%s:%d/api/v2/alerts?active=true" % (
        HOSTS[[m for m in ("m1", "m2") if m in f.procs][0]], AM_PORT))[1]) if a["labels"].get("alertname") == "PesProbeDown"], 90)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", default=os.environ.get("PES_AGENT_BINARY", os.path.join(REPO, "build", "default", "pes-agent")))
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    f = Fleet(a)
    started = time.time()
    try:
        f.netns_up()
        enter_netns(f.ns["r"])  # this process joins the router: it reaches every host
        f.start_platform()
        f.start_agents()
        try:  # series appear once a probe has run
            f.wait("probe_root_cause", lambda: b"probe_root_cause{" in http("http://%s:%d/metrics" % (
                HOSTS["a1"], AGENT_PORT))[1], 20)
        except RuntimeError:
            raise AssertionError("the agent exports no probe_root_cause (issue 13's root cause, which the rules page on)")
        f.start_monitoring()
        f.wait("every probe up in both Prometheus", f.all_up, 90)

        pg_killed(f, "1 PostgreSQL killed", ("p1", "p2"))

        log("2: killing agent a1, Prometheus p1 and Alertmanager m1 (SIGKILL)")
        for name in ("agent-a1", "p1", "m1"):
            f.kill(name)
        f.dead.add("a1")
        f.wait("p2 to see a1 down", lambda: f.scalar("p2", 'up{instance="%s:%d"}' % (HOSTS["a1"], AGENT_PORT)) == 0, 30)
        if not f.runs_by_live_agent("p2"):
            raise AssertionError("with a1 down some probe is run by no live agent")
        pg_killed(f, "2 PostgreSQL killed with a1, p1, m1 dead", ("p2",),
                  allowed_extra=("PesAgentDown/%s:%d" % (HOSTS["a1"], AGENT_PORT),))

        log("3: a1 back; cutting a2's platform link")
        f.start_agent("a1")
        f.dead.discard("a1")
        f.wait("a1 back", lambda: f.scalar("p2", 'up{instance="%s:%d"}' % (HOSTS["a1"], AGENT_PORT)) == 1, 30)
        f.wait("every probe up", lambda: f.all_up(("p2",)), 60)
        t0 = time.time()
        f.cut_platform_link("a2")
        f.wait("a2 to see the platform down", lambda: f.scalar(
            "p2", 'count(probe_up{agent="a2"} == 0)') == len([p for p, m in f.placement.items() if "a2" in m]), 60)
        time.sleep(25)
        pages = [n for _, n in f.rec.pages(t0) if any(not x.startswith("PesAgentDown/") for x in n)]
        log("3: pages while a2 is cut off: %s" % pages)
        if pages:
            raise AssertionError("3: one agent's platform link cut paged: %s" % pages)
        if not f.runs_by_live_agent("p2"):
            raise AssertionError("3: a probe is run by no live agent")
        log("PASS in %.0f s" % (time.time() - started))
    finally:
        f.cleanup()


if __name__ == "__main__":
    main()
