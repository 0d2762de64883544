#!/usr/bin/env python3
"""Evaluation half of test_dashboards_e2e.sh, run from the repository root.

Usage: e2e_evaluate.py PROMETHEUS_PORT "PROBE TYPES OF THE RUN"
Waits for the agent's data in Prometheus, then evaluates every dashboard expression and
variable, checks that every rule evaluates without error, and that the broken target's alerts
are pending/firing while healthy probes have none. Exit 1 with every problem printed.
"""
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dashboard_exprs as dx  # noqa: E402

port, types = sys.argv[1], set(sys.argv[2].split())
base = f"http://127.0.0.1:{port}/api/v1"


def query(expr):
    """(result list, error text): the series of an instant query, or why it failed."""
    data = urllib.parse.urlencode({"query": expr}).encode()
    try:
        with urllib.request.urlopen(f"{base}/query", data=data, timeout=10) as r:
            body = json.load(r)
    except urllib.error.HTTPError as e:
        body = json.load(e)
    if body.get("status") != "success":
        return None, body.get("error", "unknown error")
    res = body["data"]
    if res["resultType"] in ("vector", "matrix"):
        return res["result"], None
    return [res["result"]], None  # scalar or string: one value


def wait_for_data():
    """Every kind of series the dashboards build on is present, for long enough that rate()
    over the substituted 1m window has many samples."""
    need = ["probe_up", "probe_runs_total", "probe_run_duration_seconds_bucket",
            "probe_dependency_info", "pes_agent_build_info"]
    deadline, first = time.time() + 60, None
    while True:
        missing = [m for m in need if not (query(f"count({m})")[0] or [])]
        if not missing and first is None:
            first = time.time()
        if first is not None and time.time() - first >= 12:
            print("  data present for 12s")
            return
        if time.time() > deadline:
            print(f"  ERROR: after 60s Prometheus has no series of {missing} from the agent")
            sys.exit(1)
        time.sleep(1)


def load_allow_list():
    allow = {}
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "e2e_allow_empty.txt")) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                uid, title, ref, req, reason = [x.strip() for x in line.split("|", 4)]
                allow[(uid, title, ref)] = (req, reason)
    return allow


def check_dashboards(errors):
    allow = load_allow_list()
    allowed, used, n = [], set(), 0
    for path in dx.dashboard_files("."):
        with open(path) as f:
            dash = json.load(f)
        row = ""
        for p in dx.all_panels(dash["panels"]):
            if p.get("type") == "row":
                row = p["title"]
                continue
            for t in p.get("targets", []):
                n += 1
                expr = dx.substitute_vars(t["expr"])
                key = (dash["uid"], p["title"], t["refId"])
                where = f"{dash['uid']} / {row} / {p['title']} / {t['refId']}"
                res, err = query(expr)
                if err:
                    errors.append(f"{where}: invalid: {err}\n      {expr}")
                    continue
                if key in allow:
                    used.add(key)
                if res:
                    req = allow.get(key, (None,))[0]
                    if req is not None and (req == "always" or req not in types):
                        print(f"  note: allow-listed {where} returns data; the entry may go")
                    continue
                req, reason = allow.get(key, (None, None))
                if req is not None and (req == "always" or req not in types):
                    allowed.append(f"{where}: {reason}")
                    continue
                errors.append(f"{where}: no series\n      {expr}")
    for k in allow:
        if k not in used:
            errors.append(f"allow-list entry '{' | '.join(k)}' matches no dashboard expression")
    print(f"  {n} dashboard expressions evaluated; {len(allowed)} allowed to be empty in this run:")
    for a in allowed:
        print(f"    {a}")


def check_variables(errors):
    for f, name, sel, label in dx.variable_queries("."):
        res, err = query(sel)
        if err or not res:
            errors.append(f"{f}: variable ${name}: {sel} returns "
                          f"{'error ' + err if err else 'no series'}")
        elif not all(label in s["metric"] for s in res):
            errors.append(f"{f}: variable ${name}: series of {sel} lack the label {label}")


def check_rules(errors):
    with urllib.request.urlopen(f"{base}/rules", timeout=10) as r:
        groups = json.load(r)["data"]["groups"]
    n = 0
    for g in groups:
        for r in g["rules"]:
            n += 1
            if r.get("health") == "err" or r.get("lastError"):
                errors.append(f"rule {r['name']}: {r.get('lastError')}")
    if n == 0:
        errors.append("Prometheus loaded no rules from alerts/")
    print(f"  {n} rules loaded; none failed to evaluate")


def check_alerts(errors):
    """The broken target's PesProbeDown goes pending/firing; the marker for its dependents
    appears; healthy and independent probes have neither."""
    def active(expr):
        return query(expr)[0] or []

    down = marker = []
    deadline = time.time() + 30
    while time.time() < deadline:
        down = active('ALERTS{alertname="PesProbeDown", probe="postgresql-broken"}')
        marker = active('ALERTS{alertname="PesDependencyDown", probe="nextcloud", '
                        'depends_on="postgresql-broken"}')
        if down and marker:
            break
        time.sleep(1)
    if not down:
        errors.append("PesProbeDown did not go pending/firing for the broken target postgresql-broken")
    else:
        print(f"  PesProbeDown for postgresql-broken: {down[0]['metric']['alertstate']}")
    if not marker:
        errors.append("PesDependencyDown marker missing for nextcloud -> postgresql-broken")
    else:
        print(f"  PesDependencyDown nextcloud -> postgresql-broken: {marker[0]['metric']['alertstate']}")
    if active('ALERTS{alertname="PesProbeDown", probe="postgresql"}'):
        errors.append("PesProbeDown is active for the healthy probe postgresql")
    if active('ALERTS{alertname="PesDependencyDown", probe="collabora"}'):
        errors.append("PesDependencyDown is active for collabora, which depends on nothing")


def main():
    wait_for_data()
    errors = []
    check_dashboards(errors)
    check_variables(errors)
    check_rules(errors)
    check_alerts(errors)
    for e in errors:
        print("  ERROR:", e)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
