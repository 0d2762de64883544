#!/usr/bin/env python3
"""CPU per run of the blocking probe types (issue 16), side by side, in one run.

Starts PostgreSQL, slapd and nginx (TLS) on loopback with tests/fixtures/*.sh, then for each type
(pg, ldap, tcp, tls) measures the CPU (utime + stime) one run costs:

  floor      bench/blocking_floor: the same work with the same libraries, in one process, paced at
             the agent's rate of runs for the type (--rate), so that caches are as cold for it as
             for the agent, which runs each probe once an interval (getrusage around the loop,
             start-up not counted)
  floor-hot  the same back to back, no pause: the cheapest a run can be, caches hot
  agent      pes-agent running P probes of the type every second: the process's CPU over a window
             (sum of /proc/PID/task/*/schedstat, ns) divided by the runs finished in it
             (probe_runs_total from /metrics; the scrapes are outside the CPU window)
  floor-proc blocking_floor with N=1, one process per run (getrusage of the child, start-up counted)
  agent-cli  `pes-agent probe NAME`, one process per run
  nagios     check_pgsql / check_ldap / check_tcp (Debian's monitoring-plugins), one process per run
  blackbox   prometheus-blackbox-exporter's tcp_connect (and a tls module), driven over one
             keep-alive connection; the exporter's CPU per /probe request (schedstat, ns)

Every measurement is repeated (--repeats) and reported as median with min-max. The in-process
rows (floor, agent, blackbox) are the ones to compare for the 1.3x target; the per-process rows
compare with how Nagios runs its plugins.

  bench/blocking.py [--repeats 5] [--runs 300] [--proc-runs 40] [--window 8]
                    [--types "pg ldap tcp tls"] [--agent PATH] [--out DIR]
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")
NAGIOS = "/usr/lib/nagios/plugins"
BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"


def log(msg):
    print(f"[blocking] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- fixtures --------------------------------------------------------------------------------

class Fixture:
    def __init__(self, name, tmp, **opts):
        self.script = os.path.join(FIX, f"{name}.sh")
        self.dir = tempfile.mkdtemp(prefix=f"bench-{name}-", dir=tmp)
        os.chmod(self.dir, 0o755)
        args = [self.script, "start", self.dir] + [f"{k}={v}" for k, v in opts.items()]
        out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
        self.env = dict(l.split("=", 1) for l in out.splitlines() if "=" in l)

    def stop(self):
        subprocess.run([self.script, "stop", self.dir], capture_output=True)


# ---- CPU accounting ----------------------------------------------------------------------------

def task_cpu_ns(pid):
    """CPU time of every live thread of pid, ns (schedstat's first field)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def run_per_process(argv, n, env=None):
    """Runs argv n times, one after the other; CPU per run in us (rusage of each child)."""
    total_us, failures = 0.0, 0
    for _ in range(n):
        pid = os.posix_spawn(argv[0], argv, env or os.environ,
                             file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                                           (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)])
        _, status, ru = os.wait4(pid, 0)
        total_us += (ru.ru_utime + ru.ru_stime) * 1e6
        failures += 0 if os.waitstatus_to_exitcode(status) == 0 else 1
    return total_us / n, failures


def floor_in_process(floor, args, runs, rate=0):
    pace = ["--rate", str(rate)] if rate else []
    out = subprocess.run([floor] + pace + args + [str(runs)], capture_output=True, text=True)
    m = re.search(r"failures=(\d+) cpu_us=\S+ per_run_us=(\S+)", out.stdout)
    if not m:
        raise RuntimeError(f"blocking_floor {args[0]}: {out.stdout} {out.stderr}")
    return float(m.group(2)), int(m.group(1))


# ---- the agent ---------------------------------------------------------------------------------

def probe_yaml(kind, name, fx):
    if kind == "pg":
        pg = fx["pg"].env
        return (f"  - name: {name}\n    type: postgres\n    postgres: {{host: 127.0.0.1, port: {pg['PORT']},"
                f" dbname: {pg['DBNAME']}, user: {pg['USER']}, password: \"{pg['PASSWORD']}\"}}\n")
    if kind == "ldap":
        ld = fx["ldap"].env
        return (f"  - name: {name}\n    type: ldap\n    ldap: {{url: \"{ld['URL']}\", bind_dn: \"{ld['USER_DN']}\","
                f" password: \"{ld['USER_PASSWORD']}\"}}\n")
    ng = fx["nginx"].env
    if kind == "tcp":
        return f"  - name: {name}\n    type: tcp\n    tcp: {{address: \"127.0.0.1:{ng['PORT']}\"}}\n"
    return (f"  - name: {name}\n    type: tcp\n    tcp: {{address: \"127.0.0.1:{ng['TLS_PORT']}\","
            f" tls: {{ca_file: \"{ng['CA_FILE']}\"}}}}\n")


def write_config(path, kind, count, fx, interval="1s"):
    with open(path, "w") as f:
        f.write(f"global: {{interval: {interval}, timeout: 900ms}}\nprobes:\n")
        for i in range(count):
            f.write(probe_yaml(kind, f"{kind}{i}", fx))


def scrape_runs(port):
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    ok = fail = 0.0
    for line in body.splitlines():
        if line.startswith("probe_runs_total{"):
            v = float(line.rsplit(" ", 1)[1])
            if 'result="success"' in line:
                ok += v
            else:
                fail += v
    return ok, fail


def agent_steady(agent, cfg, repeats, window, warmup):
    port = free_port()
    proc = subprocess.Popen([agent, f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{port}",
                             "--log.level=warn"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while True:
            try:
                scrape_runs(port)
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("pes-agent did not come up")
                time.sleep(0.1)
        time.sleep(warmup)
        values, failures = [], 0
        for _ in range(repeats):
            ok0, f0 = scrape_runs(port)
            c0 = task_cpu_ns(proc.pid)
            time.sleep(window)
            c1 = task_cpu_ns(proc.pid)
            ok1, f1 = scrape_runs(port)
            runs = (ok1 - ok0) + (f1 - f0)
            failures += int(f1 - f0)
            values.append((c1 - c0) / 1e3 / max(runs, 1))
        return values, failures
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


# ---- blackbox_exporter -------------------------------------------------------------------------

def blackbox_run(fx, tmp, repeats, rates, window):
    ng = fx["nginx"].env
    cfg = os.path.join(tmp, "blackbox.yml")
    with open(cfg, "w") as f:
        f.write("modules:\n  tcp_connect:\n    prober: tcp\n    timeout: 5s\n"
                "  tls_connect:\n    prober: tcp\n    timeout: 5s\n    tcp:\n      tls: true\n"
                f"      tls_config:\n        ca_file: {ng['CA_FILE']}\n")
    port = free_port()
    proc = subprocess.Popen([BLACKBOX, f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = {}
    try:
        time.sleep(1.5)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

        def probe(module, target):
            conn.request("GET", f"/probe?module={module}&target={target}")
            body = conn.getresponse().read().decode()
            return "probe_success 1" in body

        for kind, module, target in (("tcp", "tcp_connect", f"127.0.0.1:{ng['PORT']}"),
                                     ("tls", "tls_connect", f"127.0.0.1:{ng['TLS_PORT']}")):
            for _ in range(20):
                probe(module, target)  # warm-up
            values, failures = [], 0
            rate = rates[kind]
            n = int(rate * window)
            for _ in range(repeats):
                c0 = task_cpu_ns(proc.pid)
                start = time.monotonic()
                for i in range(n):
                    failures += 0 if probe(module, target) else 1
                    time.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))  # paced
                values.append((task_cpu_ns(proc.pid) - c0) / 1e3 / n)
            result[kind] = (values, failures)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    return result


# ---- the table ---------------------------------------------------------------------------------

def fmt(values):
    if not values:
        return "-"
    med = statistics.median(values)
    return f"{med:.0f} ({min(values):.0f}-{max(values):.0f})"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--runs", type=int, default=300, help="floor and blackbox runs per repeat")
    ap.add_argument("--proc-runs", type=int, default=40, help="process-per-run rows: runs per repeat")
    ap.add_argument("--window", type=float, default=8.0, help="agent: seconds per repeat")
    ap.add_argument("--warmup", type=float, default=4.0)
    ap.add_argument("--types", default="pg ldap tcp tls")
    ap.add_argument("--probes", default="pg=20,ldap=50,tcp=100,tls=50",
                    help="agent: probes per type, each run every second")
    ap.add_argument("--agent", default=os.path.join(ROOT, "build", "default", "pes-agent"))
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    kinds = a.types.split()
    probes = dict(kv.split("=") for kv in a.probes.split(","))
    out = a.out or os.path.join(ROOT, "build", "bench", time.strftime("blocking-%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)

    floor = os.path.join(out, "blocking_floor")
    log("building blocking_floor")
    subprocess.run(["g++", "-std=c++20", "-O2", "-Wall", "-Wextra", "-Werror",
                    "-I/usr/include/postgresql", os.path.join(ROOT, "bench", "blocking_floor.cpp"),
                    "-o", floor, "-lpq", "-lldap", "-llber", "-lssl", "-lcrypto"], check=True)

    tmp = tempfile.mkdtemp(prefix="pes-bench-blocking-", dir="/tmp")
    os.chmod(tmp, 0o755)
    fx = {}
    rows = {}
    try:
        log("starting PostgreSQL, slapd and nginx")
        if "pg" in kinds:
            fx["pg"] = Fixture("postgres", tmp, MAX_CONNECTIONS=100)
        if "ldap" in kinds:
            fx["ldap"] = Fixture("slapd", tmp)
        if "tcp" in kinds or "tls" in kinds:
            fx["nginx"] = Fixture("nginx", tmp, TLS=1, ACCESS_LOG=0)

        floor_args, nagios = {}, {}
        if "pg" in fx:
            pg = fx["pg"].env
            floor_args["pg"] = ["pg", "127.0.0.1", pg["PORT"], pg["DBNAME"], pg["USER"], pg["PASSWORD"]]
            floor_args["pg-bare"] = floor_args["pg"] + ["--bare"]
            nagios["pg"] = [f"{NAGIOS}/check_pgsql", "-H", "127.0.0.1", "-P", pg["PORT"], "-d", pg["DBNAME"],
                            "-l", pg["USER"], "-p", pg["PASSWORD"], "-q", "SELECT 1"]
        if "ldap" in fx:
            ld = fx["ldap"].env
            floor_args["ldap"] = ["ldap", ld["URL"], ld["USER_DN"], ld["USER_PASSWORD"]]
            nagios["ldap"] = [f"{NAGIOS}/check_ldap", "-H", "127.0.0.1", "-p", ld["PORT"], "-3",
                              "-b", ld["BASE_DN"], "-D", ld["USER_DN"], "-P", ld["USER_PASSWORD"]]
        if "nginx" in fx:
            ng = fx["nginx"].env
            floor_args["tcp"] = ["tcp", "127.0.0.1", ng["PORT"]]
            floor_args["tls"] = ["tls", "127.0.0.1", ng["TLS_PORT"], ng["CA_FILE"]]
            nagios["tcp"] = [f"{NAGIOS}/check_tcp", "-H", "127.0.0.1", "-p", ng["PORT"]]
            nagios["tls"] = [f"{NAGIOS}/check_tcp", "-H", "127.0.0.1", "-p", ng["TLS_PORT"], "-S"]

        for kind in kinds + (["pg-bare"] if "pg" in kinds else []):
            rate = int(probes[kind.split("-")[0]])
            log(f"{kind}: floor, {rate} runs per second")
            vals, fails = [], 0
            for _ in range(a.repeats):
                v, f = floor_in_process(floor, floor_args[kind], int(rate * a.window), rate)
                vals.append(v)
                fails += f
            rows.setdefault(kind, {})["floor"] = (vals, fails)
            log(f"{kind}: floor, back to back")
            vals, fails = [], 0
            for _ in range(a.repeats):
                v, f = floor_in_process(floor, floor_args[kind], a.runs if kind not in ("pg", "pg-bare") else a.runs // 3)
                vals.append(v)
                fails += f
            rows[kind]["floor-hot"] = (vals, fails)
            if kind == "pg-bare":
                continue

            log(f"{kind}: floor, one process per run")
            vals, fails = [], 0
            for _ in range(a.repeats):
                v, f = run_per_process([floor] + floor_args[kind] + ["1"], a.proc_runs)
                vals.append(v)
                fails += f
            rows[kind]["floor-proc"] = (vals, fails)

            cfg = os.path.join(tmp, f"agent-{kind}.yml")
            write_config(cfg, kind, int(probes[kind]), fx)
            log(f"{kind}: pes-agent, {probes[kind]} probes every second")
            rows[kind]["agent"] = agent_steady(a.agent, cfg, a.repeats, a.window, a.warmup)

            one = os.path.join(tmp, f"agent-{kind}-one.yml")
            write_config(one, kind, 1, fx)
            log(f"{kind}: pes-agent probe, one process per run")
            vals, fails = [], 0
            for _ in range(a.repeats):
                v, f = run_per_process([a.agent, "probe", f"{kind}0", f"--config.file={one}"], a.proc_runs)
                vals.append(v)
                fails += f
            rows[kind]["agent-cli"] = (vals, fails)

            log(f"{kind}: {os.path.basename(nagios[kind][0])}, one process per run")
            vals, fails = [], 0
            for _ in range(a.repeats):
                v, f = run_per_process(nagios[kind], a.proc_runs)
                vals.append(v)
                fails += f
            rows[kind]["nagios"] = (vals, fails)

        if "nginx" in fx and os.path.exists(BLACKBOX):
            log("blackbox_exporter tcp_connect / tls_connect")
            for kind, r in blackbox_run(fx, tmp, a.repeats, {k: int(probes[k]) for k in ("tcp", "tls")}, a.window).items():
                if kind in rows:
                    rows[kind]["blackbox"] = r
    finally:
        for f in fx.values():
            f.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    names = {"pg": "postgres (connect+auth, SELECT 1, saturation query)",
             "pg-bare": "postgres floor without the saturation query",
             "ldap": "ldap (simple bind)", "tcp": "tcp (connect)", "tls": "tcp + TLS handshake"}
    cols = ["floor", "agent", "floor-hot", "blackbox", "floor-proc", "agent-cli", "nagios"]
    lines = ["| type | " + " | ".join(cols) + " | agent / floor |", "|---" * (len(cols) + 2) + "|"]
    for kind, r in rows.items():
        cells = [fmt(r[c][0]) if c in r else "-" for c in cols]
        ratio = "-"
        if "agent" in r and "floor" in r:
            ratio = f"{statistics.median(r['agent'][0]) / statistics.median(r['floor'][0]):.2f}"
        lines.append(f"| {names[kind]} | " + " | ".join(cells) + f" | {ratio} |")
    fails = {f"{k}/{c}": v[1] for k, r in rows.items() for c, v in r.items() if v[1]}
    load = open("/proc/loadavg").read().split()[:3]
    table = "\n".join(lines)
    text = (f"CPU per run, us, median (min-max) of {a.repeats} repeats; load average {' '.join(load)}\n\n"
            f"{table}\n\nfailed runs: {fails or 'none'}\n")
    print(text)
    with open(os.path.join(out, "blocking.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "blocking.json"), "w") as f:
        json.dump(rows, f, indent=1)
    log(f"results in {out}")


if __name__ == "__main__":
    main()
