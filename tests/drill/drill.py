#!/usr/bin/env python3
"""The incident drill: what the person on call receives when the platform breaks.

Runs, in network namespaces of its own, real PostgreSQL, slapd, the Keycloak-shaped issuer,
Prosody, coturn, nginx (Jitsi's frontend) and the web-service stand-ins of standin.py (the
"platform" namespace); the agent with compose/agent.yml's topology (the "agent" namespace, two
veth links); and Prometheus with compose/prometheus/prometheus.yml, the shipped rules and
Alertmanager with alerts/alertmanager.yml whose receivers alone are replaced by this script's
recording webhook (the "mon" namespace, where this script runs itself). Then it breaks things
(scenarios below) and records every notification. README.md next to this file has the details.

  drill.py [--scenarios a,b] [--repeat N] [--scale F] [--flavor pes|blackbox] [--rules-rev REV]
           [--out DIR] [--check]
"""
import argparse
import copy
import ctypes
import json
import os
import shutil
import signal
import statistics
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
MON_IP, AGENT_MON_IP = "10.250.1.1", "10.250.1.2"
AGENT_PLAT_IP, PLAT_IP = "10.250.2.1", "10.250.2.2"
AGENT_PORT = 9469
BLACKBOX_PORT = 9115


def log(msg):
    print("[drill %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def run(argv, ns=None, check=True, env=None, timeout=120):
    if ns:
        argv = ["ip", "netns", "exec", ns] + argv
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s %s" % (" ".join(argv), r.returncode, r.stdout[-2000:], r.stderr[-2000:]))
    return r


def kv(text):
    return dict(l.split("=", 1) for l in text.splitlines() if "=" in l)


def http(url, data=None, timeout=5):
    req = urllib.request.Request(url, data=data)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def enter_netns(name):
    """setns(2) this (still single-threaded) process into the named network namespace."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open("/run/netns/" + name, os.O_RDONLY)
    if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
        raise OSError(ctypes.get_errno(), "setns " + name)
    os.close(fd)


# ---------------------------------------------------------------------------------------------
# The recording webhook: every notification Alertmanager sends, with its arrival time.

class Recorder:
    def __init__(self):
        self.events = []
        self.lock = threading.Lock()
        rec = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.time()
                with rec.lock:
                    rec.events.append({"t": now, "receiver": self.path.strip("/"), "payload": json.loads(body)})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def since(self, t):
        with self.lock:
            return [e for e in self.events if e["t"] >= t]


# ---------------------------------------------------------------------------------------------
# Configuration: the shipped files with only addresses, secrets and receivers replaced.

def flatten(obj, prefix=""):
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, prefix + "/" + str(k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.update(flatten(v, prefix + "/" + str(i)))
    else:
        out[prefix] = obj
    return out


def assert_only_changed(orig, new, allowed, what):
    """Every leaf that differs between orig and new must be at a path ending in an allowed key."""
    a, b = flatten(orig), flatten(new)
    bad = []
    for path in sorted(set(a) | set(b)):
        if a.get(path) != b.get(path):
            if path.rsplit("/", 1)[-1] not in allowed:
                bad.append("%s: %r -> %r" % (path, a.get(path), b.get(path)))
    if bad:
        raise RuntimeError("%s: the drill changed more than addresses/secrets:\n  %s" % (what, "\n  ".join(bad)))


def scale_duration(d, scale):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for u in ("ms", "s", "m", "h"):
        if d.endswith(u) and d[: -len(u)].replace(".", "").isdigit():
            secs = float(d[: -len(u)]) * units[u] * scale
            return "%dms" % round(secs * 1000)
    raise ValueError("duration " + d)


def agent_config(src, ep, secrets_dir, scale, extra=None):
    """compose/agent.yml with the drill's addresses and secrets (checked: nothing else changes)."""
    orig = yaml.safe_load(open(src))
    cfg = copy.deepcopy(orig)

    def secret(name, value):
        path = os.path.join(secrets_dir, name)
        with open(path, "w") as f:
            f.write(value)
        return "${file:%s}" % path

    for p in cfg["probes"]:
        t, name = p["type"], p["name"]
        if t == "postgres":
            p["postgres"].update(host="127.0.0.1", port=int(ep["pg"]["PORT"]), dbname=ep["pg"]["DBNAME"],
                                 user=ep["pg"]["USER"], password=secret("pg", ep["pg"]["PASSWORD"]))
        elif t == "ldap":
            p["ldap"].update(url=ep["ldap"]["URL"], bind_dn=ep["ldap"]["ADMIN_DN"],
                             password=secret("ldap", ep["ldap"]["ADMIN_PASSWORD"]))
            p["ldap"]["search"]["base"] = ep["ldap"]["BASE_DN"]
        elif t == "keycloak":
            p["keycloak"].update(url=ep["oidc"]["URL"], client_id=ep["oidc"]["CLIENT_ID"],
                                 client_secret=secret("kc", ep["oidc"]["CLIENT_SECRET"]),
                                 health_url="http://127.0.0.1:%s/health/ready" % ep["oidc"]["MANAGEMENT_PORT"])
        elif t in ("nextcloud", "moodle", "gitea", "collabora", "nexus"):
            p[t]["url"] = "http://127.0.0.1:%d" % ep["standin"][t]
        elif name == "keycloak-login":
            p["http"]["url"] = ep["oidc"]["URL"] + "/realms/%s/account" % ep["oidc"]["REALM"]
        elif t == "jitsi":
            base = ep["jitsi"]["URL"]
            p["jitsi"].update(url=base + "/jitsi/", jicofo_health_url=base + "/jicofo/about/health",
                              jvb_health_url=base + "/jvb/about/health")
        elif t == "tcp":
            # The connectivity checks (front doors of the platform): the same front doors here.
            host = p["tcp"]["address"].rsplit(":", 1)[0]
            ports = {"keycloak": urllib.parse.urlsplit(ep["oidc"]["URL"]).port,
                     "nextcloud": ep["standin"]["nextcloud"], "jitsi-web": ep["jitsi"]["PORT"]}
            if host not in ports:
                raise RuntimeError("drill does not know the front door %s of probe %s" % (host, name))
            p["tcp"]["address"] = "127.0.0.1:%s" % ports[host]
        else:
            raise RuntimeError("drill does not know how to place probe %s (type %s)" % (name, t))
        if scale != 1:
            for k in ("interval", "timeout"):
                if k in p:
                    p[k] = scale_duration(p[k], scale)
    if scale != 1:
        for k in ("interval", "timeout"):
            cfg["global"][k] = scale_duration(cfg["global"][k], scale)
    assert_only_changed(orig, cfg, {"host", "port", "dbname", "user", "password", "url", "bind_dn", "base",
                                    "client_id", "client_secret", "health_url", "jicofo_health_url",
                                    "jvb_health_url", "interval", "timeout", "address"}, src)
    if extra:
        extra(cfg)
    return cfg


def prometheus_config(src, am_port, prom_port, rules_glob, interval=None, flavor="pes", bb_targets=None):
    orig = yaml.safe_load(open(src))
    cfg = copy.deepcopy(orig)
    cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = ["127.0.0.1:%d" % am_port]
    cfg["rule_files"] = [rules_glob]
    for job in cfg["scrape_configs"]:
        tg = job["static_configs"][0]
        if job["job_name"] == "pes-agent":
            tg["targets"] = ["%s:%d" % (AGENT_MON_IP, AGENT_PORT)]
        elif job["job_name"] == "prometheus":
            tg["targets"] = ["127.0.0.1:%d" % prom_port]
        elif job["job_name"] == "alertmanager":
            tg["targets"] = ["127.0.0.1:%d" % am_port]
    assert_only_changed(orig, cfg, {"targets", "0"}, src)
    if interval:
        cfg["global"].update(scrape_interval=interval, evaluation_interval=interval,
                             scrape_timeout=scale_duration(interval, 0.8))
    if flavor == "blackbox":
        # The community setup: blackbox_exporter next to the agent, one scrape job per module.
        cfg["scrape_configs"] = [j for j in cfg["scrape_configs"] if j["job_name"] != "pes-agent"]
        for module, targets in sorted(bb_targets.items()):
            cfg["scrape_configs"].append({
                "job_name": "blackbox-" + module, "metrics_path": "/probe", "params": {"module": [module]},
                "static_configs": [{"targets": [t], "labels": {"probe": name}} for t, name in targets],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": "%s:%d" % (AGENT_MON_IP, BLACKBOX_PORT)}]})
    return cfg


def alertmanager_config(src, webhook_port):
    """alerts/alertmanager.yml with every receiver's integrations replaced by one webhook that
    records (send_resolved kept); asserted: nothing else differs."""
    orig = yaml.safe_load(open(src))
    cfg = copy.deepcopy(orig)
    for r in cfg["receivers"]:
        confs = [c for k, v in r.items() if k.endswith("_configs") for c in v]
        if not confs:
            continue
        send_resolved = all(c.get("send_resolved", False) for c in confs)
        for k in [k for k in r if k.endswith("_configs")]:
            del r[k]
        r["webhook_configs"] = [{"url": "http://127.0.0.1:%d/%s" % (webhook_port, r["name"]),
                                 "send_resolved": send_resolved}]
    strip = lambda c: {k: v for k, v in c.items() if k != "receivers"}
    if strip(orig) != strip(cfg) or [r["name"] for r in orig["receivers"]] != [r["name"] for r in cfg["receivers"]]:
        raise RuntimeError("alertmanager config: more than the receivers changed")
    return cfg


# ---------------------------------------------------------------------------------------------
# The environment

class Drill:
    def __init__(self, a):
        self.a = a
        self.tag = "pesdrill%d" % os.getpid()
        self.ns = {k: "%s-%s" % (self.tag, k) for k in ("mon", "agent", "plat")}
        self.tmp = tempfile.mkdtemp(prefix="pes-drill.")
        os.chmod(self.tmp, 0o755)
        self.procs = {}
        self.fixtures = {}
        self.ep = {"standin": {}}
        self.state_dir = os.path.join(self.tmp, "state")
        os.makedirs(self.state_dir)
        os.chmod(self.state_dir, 0o777)

    # --- namespaces ---------------------------------------------------------------------------
    def netns_up(self):
        mon, agent, plat = self.ns["mon"], self.ns["agent"], self.ns["plat"]
        t = self.tag[-6:]
        self.if_ap = "dra" + t  # agent side of the platform link
        for n in (mon, agent, plat):
            run(["ip", "netns", "add", n])
            run(["ip", "-n", n, "link", "set", "lo", "up"])
        run(["ip", "link", "add", "drm" + t, "netns", mon, "type", "veth", "peer", "name", "drb" + t, "netns", agent])
        run(["ip", "link", "add", self.if_ap, "netns", agent, "type", "veth", "peer", "name", "drp" + t, "netns", plat])
        for n, ifc, addr in ((mon, "drm" + t, MON_IP), (agent, "drb" + t, AGENT_MON_IP),
                             (agent, self.if_ap, AGENT_PLAT_IP), (plat, "drp" + t, PLAT_IP)):
            run(["ip", "-n", n, "addr", "add", addr + "/30", "dev", ifc])
            run(["ip", "-n", n, "link", "set", ifc, "up"])
        # The agent addresses the platform as 127.0.0.1:PORT (so URLs the services hand out,
        # e.g. the issuer's token endpoint, work unchanged); the agent's namespace sends that
        # over the platform link, the platform's namespace delivers it to its loopback.
        run(["sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"], ns=agent)
        run(["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", self.if_ap, "-j", "MASQUERADE"], ns=agent)
        run(["sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"], ns=plat)
        run(["sysctl", "-qw", "net.ipv4.conf.drp%s.route_localnet=1" % t], ns=plat)
        run(["iptables", "-t", "nat", "-A", "PREROUTING", "-i", "drp" + t, "-d", PLAT_IP, "-j", "DNAT",
             "--to-destination", "127.0.0.1"], ns=plat)

    def nat_to_platform(self, port_map=None):
        """Agent side: 127.0.0.1:P -> platform (optionally to another port: the Keycloak gate)."""
        agent = self.ns["agent"]
        for src, dst in (port_map or {}).items():
            run(["iptables", "-t", "nat", "-A", "OUTPUT", "-d", "127.0.0.1", "-p", "tcp", "--dport", str(src),
                 "-j", "DNAT", "--to-destination", "%s:%d" % (PLAT_IP, dst)], ns=agent)
        for proto in ("tcp", "udp"):
            exclude = ["!", "--dport", str(AGENT_PORT)] if proto == "tcp" else []
            run(["iptables", "-t", "nat", "-A", "OUTPUT", "-d", "127.0.0.1", "-p", proto] + exclude +
                ["-j", "DNAT", "--to-destination", PLAT_IP], ns=agent)

    def netns_down(self):
        for n in self.ns.values():
            run(["ip", "netns", "del", n], check=False)

    # --- processes ----------------------------------------------------------------------------
    def spawn(self, name, argv, ns=None, env=None):
        logf = open(os.path.join(self.tmp, name + ".log"), "ab")
        if ns:
            argv = ["ip", "netns", "exec", ns] + argv
        p = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, env=env)
        self.procs[name] = p
        return p

    def stop(self, name, sig=signal.SIGTERM):
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
        args = ["bash", os.path.join(FIX, name + ".sh"), cmd, d] + ["%s=%s" % kv_ for kv_ in opts.items()]
        if cmd == "start":
            args.append("OWNER_PID=%d" % os.getpid())
        r = run(args, ns=self.ns["plat"], check=(cmd != "stop"), timeout=90)
        out = kv(r.stdout)
        if cmd == "start":
            self.fixtures[name] = d
        return out

    def fixture_pid(self, name):
        return int(open(os.path.join(self.fixtures[name], "pid")).read())

    def wait(self, what, cond, secs=60, step=0.5):
        end = time.time() + secs
        while time.time() < end:
            try:
                if cond():
                    return True
            except Exception:
                pass
            time.sleep(step)
        raise RuntimeError("timed out waiting for " + what)

    # --- platform -----------------------------------------------------------------------------
    def start_platform(self):
        log("platform: PostgreSQL, slapd, the OIDC issuer, Prosody, coturn, nginx, stand-ins")
        pg = self.fixture("postgres")
        # The agent and the stand-ins reach PostgreSQL through the platform link (source
        # 10.250.2.1 after NAT); the fixture only admits 127.0.0.1.
        hba = os.path.join(self.fixtures["postgres"], "data", "pg_hba.conf")
        with open(hba, "a") as f:
            f.write("host all all %s/32 scram-sha-256\n" % AGENT_PLAT_IP)
        run(["psql", "-X", "-h", "127.0.0.1", "-p", pg["PORT"], "-U", pg["ADMIN_USER"], "-d", "postgres",
             "-tAc", "SELECT pg_reload_conf()"], ns=self.ns["plat"], env=dict(os.environ, PGPASSWORD=pg["ADMIN_PASSWORD"]))
        self.ep["pg"] = pg
        self.ep["ldap"] = self.fixture("slapd")
        self.ep["oidc"] = self.fixture("oidc")
        pros = self.fixture("prosody")
        self.ep["coturn"] = self.fixture("coturn")
        conf = os.path.join(self.tmp, "jitsi.conf")
        src = open(os.path.join(FIX, "jitsi", "nginx.conf")).read()
        with open(conf, "w") as f:
            f.write(src.replace("@JITSI@", os.path.join(FIX, "jitsi")).replace("@PROSODY_PORT@", pros["PORT"]))
        self.ep["jitsi"] = self.fixture("nginx", CONF=conf)
        ports = self.free_ports(7)
        for svc in ("nextcloud", "moodle", "gitea", "collabora", "nexus"):
            self.ep["standin"][svc] = ports.pop()
            self.start_standin(svc)
        self.ep["gate"] = (ports.pop(), ports.pop())
        self.start_gate()

    def free_ports(self, n):
        out = run(["bash", "-c", "source %s/lib.sh; fx_free_port %d" % (FIX, n)], ns=self.ns["plat"]).stdout
        return [int(x) for x in out.split()]

    def pg_arg(self):
        pg = self.ep["pg"]
        return "127.0.0.1:%s:%s:%s" % (pg["PORT"], pg["DBNAME"], pg["USER"])

    def start_standin(self, svc):
        port = self.ep["standin"][svc]
        self.spawn("standin-" + svc, ["/usr/bin/python3", os.path.join(HERE, "standin.py"), svc, "--port", str(port),
                                      "--state", self.state_dir, "--pg", self.pg_arg()],
                   ns=self.ns["plat"], env=dict(os.environ, PGPASSWORD=self.ep["pg"]["PASSWORD"]))
        self.wait("stand-in " + svc, lambda: run(["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/%d" % port],
                                               ns=self.ns["plat"], check=False).returncode == 0, 20)

    def start_gate(self):
        o, g = self.ep["oidc"], self.ep["gate"]
        self.spawn("keycloak-gate", ["/usr/bin/python3", os.path.join(HERE, "standin.py"), "keycloak-gate",
                                     "--port", str(g[0]), "--upstream", o["PORT"], "--mgmt-port", str(g[1]),
                                     "--upstream-mgmt", o["MANAGEMENT_PORT"], "--state", self.state_dir,
                                     "--pg", self.pg_arg()],
                   ns=self.ns["plat"], env=dict(os.environ, PGPASSWORD=self.ep["pg"]["PASSWORD"]))
        self.wait("keycloak gate", lambda: run(["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/%d" % g[1]],
                                             ns=self.ns["plat"], check=False).returncode == 0, 20)

    def set_mode(self, svc, mode):
        with open(os.path.join(self.state_dir, svc + ".mode"), "w") as f:
            f.write(mode)

    # --- agent / blackbox ---------------------------------------------------------------------
    def start_prober(self):
        o, g = self.ep["oidc"], self.ep["gate"]
        # Everything the agent sends to the issuer passes the gate (Keycloak's database health).
        self.nat_to_platform({int(o["PORT"]): g[0], int(o["MANAGEMENT_PORT"]): g[1]})
        if self.a.flavor == "blackbox":
            return self.start_blackbox()
        self.agent_cfg_path = os.path.join(self.tmp, "agent.yml")
        self.write_agent_config()
        run([self.a.agent, "check-config", self.agent_cfg_path])
        self.spawn("agent", [self.a.agent, "--config.file=" + self.agent_cfg_path,
                             "--web.listen-address=0.0.0.0:%d" % AGENT_PORT], ns=self.ns["agent"])
        url = "http://%s:%d/metrics" % (AGENT_MON_IP, AGENT_PORT)
        self.wait("the agent's metrics", lambda: http(url)[0] == 200, 30)

    def agent_knows(self, snippet):
        """Whether this agent binary accepts a configuration feature (check-config)."""
        path = os.path.join(self.tmp, "feature.yml")
        with open(path, "w") as f:
            f.write("probes:\n  - {name: t, type: tcp, tcp: {address: \"127.0.0.1:1\"}}\n" + snippet)
        return run([self.a.agent, "check-config", path], check=False).returncode == 0

    def add_connectivity(self, cfg):
        """The agent's path to the platform. compose/agent.yml names none, so the drill adds the
        one it needs: a TCP check of the platform's reverse proxy (nginx here), the only probe
        and key the drill adds to the topology."""
        if "connectivity" in cfg or not self.supports_connectivity:
            return
        cfg["probes"].insert(0, {"name": "platform-proxy", "service": "platform", "type": "tcp",
                                 "tcp": {"address": "127.0.0.1:%s" % self.ep["jitsi"]["PORT"]}})
        cfg["connectivity"] = {"probes": ["platform-proxy"]}

    def write_agent_config(self, extra=None):
        secrets = os.path.join(self.tmp, "secrets")
        os.makedirs(secrets, exist_ok=True)
        if not hasattr(self, "supports_connectivity"):
            self.supports_connectivity = self.agent_knows("connectivity: {probes: [t]}\n")
            log("agent connectivity checks: %s" % ("yes" if self.supports_connectivity else "not supported by this binary"))

        def extras(cfg):
            self.add_connectivity(cfg)
            if extra:
                extra(cfg)
        cfg = agent_config(os.path.join(REPO, "compose", "agent.yml"), self.ep, secrets, self.a.scale, extras)
        with open(self.agent_cfg_path, "w") as f:
            yaml.safe_dump(cfg, f, sort_keys=False)
        self.agent_cfg = cfg

    def reload_agent(self, extra=None):
        self.write_agent_config(extra)
        st, _ = http("http://%s:%d/-/reload" % (AGENT_MON_IP, AGENT_PORT), data=b"")
        assert st == 200

    def blackbox_targets(self):
        """The same services, checked the blackbox way: one URL or port per probe."""
        sp, o = self.ep["standin"], self.ep["oidc"]
        return {
            "http_2xx": [("http://127.0.0.1:%d/status.php" % sp["nextcloud"], "nextcloud"),
                         ("http://127.0.0.1:%d/login/index.php" % sp["moodle"], "moodle"),
                         ("http://127.0.0.1:%d/api/healthz" % sp["gitea"], "gitea"),
                         ("http://127.0.0.1:%d/hosting/discovery" % sp["collabora"], "collabora"),
                         ("http://127.0.0.1:%d/service/rest/v1/status" % sp["nexus"], "nexus"),
                         ("http://127.0.0.1:%s/health/ready" % o["MANAGEMENT_PORT"], "keycloak"),
                         (o["URL"] + "/realms/%s/account" % o["REALM"], "keycloak-login"),
                         (self.ep["jitsi"]["URL"] + "/jitsi/", "jitsi")],
            "tcp_connect": [("127.0.0.1:%s" % self.ep["pg"]["PORT"], "postgres"),
                            ("127.0.0.1:%s" % self.ep["ldap"]["PORT"], "openldap")],
        }

    def start_blackbox(self):
        cfg = os.path.join(HERE, "community", "blackbox.yml")
        self.spawn("blackbox", ["prometheus-blackbox-exporter", "--config.file=" + cfg,
                                "--web.listen-address=0.0.0.0:%d" % BLACKBOX_PORT], ns=self.ns["agent"])
        self.wait("blackbox_exporter", lambda: http("http://%s:%d/metrics" % (AGENT_MON_IP, BLACKBOX_PORT))[0] == 200, 30)

    # --- monitoring ---------------------------------------------------------------------------
    def start_monitoring(self):
        self.rec = Recorder()
        ports = self.free_ports(2)
        self.prom_port, self.am_port = ports
        if self.a.flavor == "blackbox":
            rules_dir = os.path.join(HERE, "community")
            am_src = os.path.join(HERE, "community", "alertmanager.yml")
        else:
            rules_dir = self.a.rules_dir
            am_src = os.path.join(rules_dir, "alertmanager.yml")
        pc = prometheus_config(self.a.prometheus_config, self.am_port,
                               self.prom_port, os.path.join(rules_dir, "*.rules.yml"), self.a.prom_interval,
                               self.a.flavor, self.blackbox_targets() if self.a.flavor == "blackbox" else None)
        self.prom_cfg = os.path.join(self.tmp, "prometheus.yml")
        yaml.safe_dump(pc, open(self.prom_cfg, "w"), sort_keys=False)
        self.am_cfg = os.path.join(self.tmp, "alertmanager.yml")
        yaml.safe_dump(alertmanager_config(am_src, self.rec.port), open(self.am_cfg, "w"), sort_keys=False)
        run(["promtool", "check", "config", self.prom_cfg])
        run(["amtool", "check-config", self.am_cfg])
        self.scrape = pc["global"]["scrape_interval"]

    def restart_monitoring(self):
        """A fresh Prometheus and Alertmanager (empty TSDB and state) for each scenario, so one
        scenario's history cannot page in the next."""
        self.stop("prometheus")
        self.stop("alertmanager")
        for d in ("prom-data", "am-data"):
            shutil.rmtree(os.path.join(self.tmp, d), ignore_errors=True)
        self.spawn("alertmanager", ["prometheus-alertmanager", "--config.file=" + self.am_cfg,
                                    "--storage.path=" + os.path.join(self.tmp, "am-data"),
                                    "--web.listen-address=127.0.0.1:%d" % self.am_port,
                                    "--cluster.listen-address="])
        self.spawn("prometheus", ["prometheus", "--config.file=" + self.prom_cfg,
                                  "--storage.tsdb.path=" + os.path.join(self.tmp, "prom-data"),
                                  "--web.listen-address=127.0.0.1:%d" % self.prom_port])
        self.wait("Alertmanager", lambda: http("http://127.0.0.1:%d/-/ready" % self.am_port)[0] == 200, 30)
        self.wait("Prometheus", lambda: http("http://127.0.0.1:%d/-/ready" % self.prom_port)[0] == 200, 60)

    def query(self, q):
        st, body = http("http://127.0.0.1:%d/api/v1/query?%s" % (self.prom_port, urllib.parse.urlencode({"query": q})))
        return json.loads(body)["data"]["result"]

    def am_alerts(self):
        return json.loads(http("http://127.0.0.1:%d/api/v2/alerts" % self.am_port)[1])

    def healthy(self):
        if self.a.flavor == "blackbox":
            r = self.query("min(probe_success)")
        else:
            # probe_up has no series until a probe's first run is judged, so min() alone would
            # pass while some probes have not run yet: a fault injected then meets a first run,
            # which is judged at once (no up state to confirm a change from) and pages before
            # the confirm window. Every configured probe must be up.
            r = self.query('count(probe_up{job="pes-agent"} == 1) == '
                           'sum(pes_agent_probes_configured{job="pes-agent"})')
        return r and float(r[0]["value"][1]) >= 1

    def cleanup(self):
        for name in list(self.procs):
            self.stop(name)
        for name in list(self.fixtures):
            self.fixture(name, "stop")
        self.netns_down()
        if not self.a.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            log("kept " + self.tmp)


# ---------------------------------------------------------------------------------------------
# Scenarios: fault(), recover(), what the on-call person should receive.

class Scenario:
    name = ""
    title = ""
    hold = 240            # seconds the fault lasts at most (full timings)
    hold_after_page = 20  # the fault lasts this long after the first page
    want_pages = 1
    want_probe = None     # the probe the one page must name
    want_ticket = False

    def __init__(self, d):
        self.d = d

    def fault(self):
        pass

    def recover(self):
        pass

    def cleanup(self):
        pass


class PgKilled(Scenario):
    name, title, want_probe = "pg-killed", "PostgreSQL killed (SIGKILL), then restarted", "postgres"

    def fault(self):
        os.killpg(self.d.fixture_pid("postgres"), signal.SIGKILL)

    def recover(self):
        self.d.fixture("postgres")


class LdapDown(Scenario):
    name, title, want_probe = "ldap-down", "OpenLDAP down", "openldap"

    def fault(self):
        self.d.fixture("slapd", "stop")

    def recover(self):
        self.d.fixture("slapd")


class IdpDown(Scenario):
    name, title, want_probe = "idp-down", "identity provider (Keycloak) down", "keycloak"

    def fault(self):
        self.d.stop("keycloak-gate", signal.SIGKILL)
        self.d.fixture("oidc", "stop")

    def recover(self):
        self.d.ep["oidc"] = self.d.fixture("oidc")
        self.d.start_gate()


class CutOff(Scenario):
    name, title, want_probe = "cut-off", "agent cut off from the platform (link down), still scraped", None
    # The one page is the agent's, not a probe's.

    def fault(self):
        run(["ip", "-n", self.d.ns["agent"], "link", "set", self.d.if_ap, "down"])

    def recover(self):
        run(["ip", "-n", self.d.ns["agent"], "link", "set", self.d.if_ap, "up"])


class Blip(Scenario):
    name, title, want_pages = "blip", "20 s blip of Gitea (its server restarted)", 0
    hold = 20
    hold_after_page = 0

    def fault(self):
        self.d.stop("standin-gitea", signal.SIGKILL)

    def recover(self):
        self.d.start_standin("gitea")


class RealDown(Scenario):
    name, title, want_probe = "gitea-down", "Gitea really down, its dependencies up", "gitea"

    def fault(self):
        self.d.stop("standin-gitea", signal.SIGKILL)

    def recover(self):
        self.d.start_standin("gitea")


class NextcloudMaintenance(Scenario):
    name, title, want_pages = "nc-maintenance", "Nextcloud maintenance: true", 0
    hold = 120

    def fault(self):
        self.d.set_mode("nextcloud", "maintenance")

    def recover(self):
        self.d.set_mode("nextcloud", "")


class MoodleUpgrade(Scenario):
    name, title, want_pages = "moodle-upgrade", "Moodle's upgrade (maintenance) page", 0
    hold = 120

    def fault(self):
        self.d.set_mode("moodle", "upgrade")

    def recover(self):
        self.d.set_mode("moodle", "")


class MaintenanceThenDown(Scenario):
    """Nextcloud in maintenance, then maintenance ends but status.php answers 500: that pages,
    timed from the end of maintenance."""
    name, title, want_probe = "nc-maint-ends-down", "Nextcloud maintenance ends, still down", "nextcloud"
    maint = 60

    def fault(self):
        self.d.set_mode("nextcloud", "maintenance")
        time.sleep(max(self.maint * self.d.a.scale, 30))
        self.d.set_mode("nextcloud", "error")
        self.t_ref = time.time()  # the page is timed from the end of maintenance

    def recover(self):
        self.d.set_mode("nextcloud", "")


def window_for(probe, start, seconds):
    """A maintenance window of the configuration (global `maintenance:` list) for one probe,
    from `start` (a UTC minute) for `seconds`."""
    def add(cfg):
        cfg.setdefault("maintenance", []).append({
            "probes": [probe], "start": time.strftime("%H:%M", time.gmtime(start)),
            "duration": "%ds" % seconds, "time_zone": "UTC"})
    return add


class Window(Scenario):
    """Gitea down for a while inside a maintenance window of the configuration, back before
    the window ends: no page. The window is taken out again after the observation."""
    name, title, want_pages = "window", "Gitea down inside a configured maintenance window", 0
    hold = 120

    def fault(self):
        now = time.time()
        start = now - now % 60
        length = int(now - start) + int(max(self.hold * self.d.a.scale, 45)) + 600
        self.d.reload_agent(window_for("gitea", start, length))
        time.sleep(3)
        self.d.stop("standin-gitea", signal.SIGKILL)

    def recover(self):
        self.d.start_standin("gitea")

    def cleanup(self):
        self.d.reload_agent()


class WindowEndsDown(Scenario):
    """The window ends while Gitea is still down: that pages, timed from the window's end."""
    name, title, want_probe = "window-ends-down", "configured maintenance window ends, Gitea still down", "gitea"

    def fault(self):
        now = time.time()
        start = now - now % 60
        rest = int(max(60 * self.d.a.scale, 30))
        length = int(now - start) + rest
        self.d.reload_agent(window_for("gitea", start, length))
        time.sleep(3)
        self.d.stop("standin-gitea", signal.SIGKILL)
        self.t_ref = start + length
        time.sleep(max(0, self.t_ref - time.time()))

    def recover(self):
        self.d.start_standin("gitea")

    def cleanup(self):
        self.d.reload_agent()


class Slow(Scenario):
    """Gitea answers after 3 s, above a latency bound of 2 s (`degraded_above`, added to its
    probe for this scenario; compose/agent.yml sets none): a ticket, no page."""
    name, title, want_pages, want_ticket = "slow", "Gitea slow but up (3 s, bound 2 s)", 0, True
    hold = 240

    def fault(self):
        self.d.reload_agent(lambda cfg: [p.update(degraded_above="2s") for p in cfg["probes"] if p["name"] == "gitea"])
        time.sleep(3)
        self.d.set_mode("gitea", "slow 3")

    def recover(self):
        self.d.set_mode("gitea", "")

    def cleanup(self):
        self.d.reload_agent()


SCENARIOS = {c.name: c for c in (PgKilled, LdapDown, IdpDown, CutOff, Blip, RealDown, NextcloudMaintenance,
                                   MoodleUpgrade, MaintenanceThenDown, Window, WindowEndsDown, Slow)}


def alert_key(a):
    return tuple(sorted((k, v) for k, v in a["labels"].items()))


def label_str(a):
    l = a["labels"]
    extra = l.get("probe") or l.get("instance", "")
    for k in ("component", "check", "burn"):
        if k in l:
            extra += "," + l[k]
    return "%s{%s}" % (l.get("alertname"), extra)


def run_scenario(d, sc, observe):
    d.restart_monitoring()
    try:
        d.wait("every probe up in Prometheus", d.healthy, 180, 1)
    except RuntimeError:
        log("down: %s" % [r["metric"] for r in d.query("probe_up == 0 or probe_success == 0")])
        raise
    warm = max(3 * float(scale_duration(d.scrape, 1)[:-2]) / 1000, 10)
    time.sleep(warm)
    pre = d.am_alerts()
    t0 = time.time()
    log("%s: fault (%s)" % (sc.name, sc.title))
    sc.fault()
    if sc.name == "blip":
        # 20 s at the shipped timings, where the agent's confirm window is 20 s; scaled with the
        # intervals (the confirm window is 2/3 of the interval below 30 s).
        hold = sc.hold * d.a.scale
    else:
        hold = max(sc.hold * d.a.scale, 45)
    end = t0 + hold
    first_page = None
    while time.time() < end:
        pages = [e for e in d.rec.since(t0) if e["receiver"] == "pager" and e["payload"]["status"] == "firing"]
        if pages and first_page is None:
            first_page = pages[0]["t"]
            end = min(end, first_page + sc.hold_after_page)
        time.sleep(0.5)
    log("%s: recover" % sc.name)
    sc.recover()
    t1 = time.time()
    time.sleep(observe)
    t2 = time.time()
    sc.cleanup()
    r = summarize(sc, d.rec.since(t0), t0, t1, t2, pre, d.am_alerts())
    if getattr(sc, "t_ref", None) and r["pages"]:
        first = min(e["t"] for e in d.rec.since(t0) if e["receiver"] == "pager" and e["payload"]["status"] == "firing")
        r["first_page_s"] = round(first - sc.t_ref, 1)
        r["first_page_from"] = "end of maintenance"
    return r


def summarize(sc, events, t0, t1, t2, pre, post_am):
    firing, resolved = {}, {}
    for e in events:
        for a in e["payload"]["alerts"]:
            k = (e["receiver"], alert_key(a))
            if a["status"] == "firing":
                firing.setdefault(k, (e["t"], a))
            elif k in firing:
                resolved.setdefault(k, e["t"])
    pages = [(t, a) for (rcv, _), (t, a) in firing.items() if rcv == "pager"]
    tickets = [(t, a) for (rcv, _), (t, a) in firing.items() if rcv == "ticket"]
    pages.sort(key=lambda x: x[0])
    res = {
        "scenario": sc.name, "title": sc.title,
        "fault_at": t0, "recovered_at": t1, "observed_until": t2,
        "pages": [{"alert": label_str(a), "summary": a["annotations"].get("summary", ""),
                   "description": a["annotations"].get("description", ""),
                   "after_fault_s": round(t - t0, 1)} for t, a in pages],
        "first_page_s": round(pages[0][0] - t0, 1) if pages else None,
        "pages_after_recovery": [label_str(a) for t, a in pages if t > t1],
        "tickets": [{"alert": label_str(a), "summary": a["annotations"].get("summary", ""),
                     "after_fault_s": round(t - t0, 1)} for t, a in sorted(tickets, key=lambda x: x[0])],
        "resolves_after_recovery_s": {
            "%s:%s" % (rcv, label_str(a)): (round(resolved[(rcv, k)] - t1, 1) if (rcv, k) in resolved else None)
            for (rcv, k), (t, a) in firing.items()},
        "still_active_at_end": sorted({a["labels"]["alertname"] + "{" + a["labels"].get("probe", a["labels"].get("instance", "")) + "}"
                                       for a in post_am if a["status"]["state"] != "unprocessed"}),
        "active_before_fault": len(pre),
    }
    return res


def check_goals(sc, r):
    """The goals of issue 13 for one scenario; returns the list of violations."""
    bad = []
    n = len(r["pages"])
    if n != sc.want_pages:
        bad.append("%d pages (want %d): %s" % (n, sc.want_pages, [p["alert"] for p in r["pages"]]))
    if sc.want_pages and n and sc.want_probe and "{%s}" % sc.want_probe not in r["pages"][0]["alert"]:
        bad.append("the page names %s, not %s" % (r["pages"][0]["alert"], sc.want_probe))
    if sc.name == "cut-off" and n == 1 and "PesAgentCannotSeePlatform" not in r["pages"][0]["alert"]:
        bad.append("the page is %s, not the agent's PesAgentCannotSeePlatform" % r["pages"][0]["alert"])
    if r["first_page_s"] is not None and sc.want_pages and r["first_page_s"] > 75:
        bad.append("first page after %.0f s (max 75)" % r["first_page_s"])
    if r["pages_after_recovery"] and sc.want_pages == 0:
        pass  # already counted
    elif r["pages_after_recovery"]:
        bad.append("pages after recovery: %s" % r["pages_after_recovery"])
    for k, v in r["resolves_after_recovery_s"].items():
        if v is None or v > 60:
            bad.append("%s resolved %s" % (k, "not within the %.0f s observed" % (r["observed_until"] - r["recovered_at"])
                                            if v is None else "after %.0f s" % v))
    if sc.want_ticket and not r["tickets"]:
        bad.append("no ticket")
    return bad


def markdown(results, flavor_of):
    lines = ["| setup | scenario | pages (alert: summary) | fault → first page | recovery → resolves | pages after recovery | tickets | goals |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        # The first page with its summary (what the person on call reads first), then the others.
        pages = "; ".join(("%s: %s" % (p["alert"], p["summary"])) if i == 0 else p["alert"]
                          for i, p in enumerate(r["pages"])) or "0"
        res = ", ".join("%s %s" % (k.split(":", 1)[1], "> %.0f s" % (r["observed_until"] - r["recovered_at"]) if v is None else "%.0f s" % v)
                        for k, v in r["resolves_after_recovery_s"].items()) or "–"
        tickets = ", ".join(t["alert"] for t in r["tickets"]) or "0"
        fp = "%.0f s" % r["first_page_s"] if r["first_page_s"] is not None else "–"
        goals = "ok" if not r["violations"] else "; ".join(r["violations"])
        lines.append("| %s | %s | %s | %s | %s | %d | %s | %s |" % (
            flavor_of, r["title"], pages.replace("|", "\\|"), fp, res, len(r["pages_after_recovery"]), tickets,
            goals.replace("|", "\\|")))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--repeat", type=int, default=1, help="runs of pg-killed")
    ap.add_argument("--scale", type=float, default=1.0, help="factor on the agent's intervals and timeouts")
    ap.add_argument("--prom-interval", default=None, help="override Prometheus' scrape/evaluation interval")
    ap.add_argument("--observe", type=float, default=240, help="seconds watched after recovery")
    ap.add_argument("--flavor", choices=["pes", "blackbox"], default="pes")
    ap.add_argument("--rules-dir", default=os.path.join(REPO, "alerts"),
                    help="rule files and alertmanager.yml (default: the shipped alerts/)")
    ap.add_argument("--prometheus-config", default=os.path.join(REPO, "compose", "prometheus", "prometheus.yml"))
    ap.add_argument("--agent", default=os.environ.get("PES_AGENT_BINARY", os.path.join(REPO, "build", "default", "pes-agent")))
    ap.add_argument("--out", default=None)
    ap.add_argument("--label", default=None, help="name of this setup in the table")
    ap.add_argument("--check", action="store_true", help="exit 1 unless every goal is met")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--render", nargs="+", metavar="JSON", help="only print the tables of earlier runs")
    a = ap.parse_args()
    if a.render:
        for path in a.render:
            data = json.load(open(path))
            print(markdown(data["results"], data["setup"]))
            pg = [r["first_page_s"] for r in data["results"] if r["scenario"] == "pg-killed" and r["first_page_s"] is not None]
            if pg:
                print("\npg-killed over %d runs (%s): first page p50 %.0f s, max %.0f s\n" % (
                    len(pg), data["setup"], statistics.median(pg), max(pg)))
        return
    if os.geteuid() != 0:
        sys.exit("drill: needs root (network namespaces)")
    names = [s for s in a.scenarios.split(",") if s]
    for s in names:
        if s not in SCENARIOS:
            sys.exit("drill: unknown scenario %s (know: %s)" % (s, ", ".join(SCENARIOS)))
    d = Drill(a)
    results = []
    try:
        d.netns_up()
        enter_netns(d.ns["mon"])
        run(["ip", "link", "set", "lo", "up"])
        d.start_platform()
        d.start_prober()
        d.start_monitoring()
        for s in names:
            for i in range(a.repeat if s == "pg-killed" else 1):
                sc = SCENARIOS[s](d)
                r = run_scenario(d, sc, a.observe)
                r["run"] = i + 1
                r["violations"] = check_goals(sc, r)
                results.append(r)
                log("%s: pages %s, first %s s, after recovery %s, tickets %s, resolves %s%s" % (
                    s, [p["alert"] for p in r["pages"]], r["first_page_s"], r["pages_after_recovery"],
                    [t["alert"] for t in r["tickets"]], r["resolves_after_recovery_s"],
                    "" if not r["violations"] else "  GOALS MISSED: %s" % r["violations"]))
    finally:
        d.cleanup()
    label = a.label or a.flavor
    pg = [r["first_page_s"] for r in results if r["scenario"] == "pg-killed" and r["first_page_s"] is not None]
    summary = {"setup": label, "scale": a.scale, "prometheus_interval": a.prom_interval, "results": results}
    if pg:
        summary["pg_killed_first_page_p50_s"] = statistics.median(pg)
        summary["pg_killed_first_page_max_s"] = max(pg)
    md = markdown(results, label)
    if pg:
        md += "\n\npg-killed over %d runs: first page p50 %.0f s, max %.0f s\n" % (len(pg), statistics.median(pg), max(pg))
    print(md)
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        json.dump(summary, open(os.path.join(a.out, label + ".json"), "w"), indent=1)
        open(os.path.join(a.out, label + ".md"), "w").write(md + "\n")
    if a.check and any(r["violations"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
