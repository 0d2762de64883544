#!/usr/bin/env python3
"""Static checks of the Grafana dashboards of a source tree (used by test_dashboards.sh).
Usage: check_dashboards.py SOURCE_DIR OUT_RULES_YML. Exit 1 and print every problem found;
writes every expression (Grafana variables substituted) as a recording rule to OUT_RULES_YML
so that promtool can parse it."""
import json, sys, yaml
import os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dashboard_exprs as dx

src = sys.argv[1]
os.chdir(src)
src = "."
errors = []
ds_uids = set()
with open("compose/grafana/provisioning/datasources/prometheus.yml") as f:
    for d in yaml.safe_load(f)["datasources"]:
        ds_uids.add(d["uid"])
if len(ds_uids) != 1:
    errors.append(f"provisioning defines {len(ds_uids)} datasources, expected exactly one")
known = dx.known_metrics(src)
seen_uids = set()
row_titles = {}

def walk_ds(node, where):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "datasource":
                uid = v.get("uid") if isinstance(v, dict) else v
                if uid not in ds_uids:
                    errors.append(f"{where}: datasource {v!r} is not the provisioned one {sorted(ds_uids)}")
            else:
                walk_ds(v, where)
    elif isinstance(node, list):
        for v in node:
            walk_ds(v, where)

for path in dx.dashboard_files(src):
    name = path.split("/")[-1]
    try:
        with open(path) as f:
            d = json.load(f)
    except json.JSONDecodeError as e:
        errors.append(f"{name}: invalid JSON: {e}")
        continue
    if d.get("schemaVersion", 0) < 36:
        errors.append(f"{name}: schemaVersion {d.get('schemaVersion')} is older than Grafana 10's")
    if not d.get("uid") or d["uid"] in seen_uids:
        errors.append(f"{name}: missing or duplicate dashboard uid {d.get('uid')!r}")
    seen_uids.add(d.get("uid"))
    if "id" in d and d["id"] is not None:
        errors.append(f"{name}: provisioned dashboards must not carry a database id")
    walk_ds(d, name)
    vars_ = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
    for want in ("service", "probe"):
        if want not in vars_:
            errors.append(f"{name}: template variable ${want} missing")
        elif not vars_[want].get("includeAll") or vars_[want].get("allValue") != ".*":
            errors.append(f"{name}: ${want} must offer All (allValue .*)")
    ids = set()
    panels = list(dx.all_panels(d.get("panels", [])))
    if not panels:
        errors.append(f"{name}: no panels")
    rows = []
    for p in panels:
        pid = p.get("id")
        where = f"{name}: panel {pid} {p.get('title')!r}"
        if not isinstance(pid, int) or pid in ids:
            errors.append(f"{where}: missing or duplicate panel id")
        ids.add(pid)
        g = p.get("gridPos", {})
        if not all(k in g for k in "hwxy") or g["x"] + g["w"] > 24 or g["w"] <= 0 or g["h"] <= 0:
            errors.append(f"{where}: bad gridPos {g}")
        if p.get("type") == "row":
            rows.append(p.get("title"))
            continue
        if p.get("type") not in {"stat", "timeseries", "table", "gauge", "state-timeline", "bargauge"}:
            errors.append(f"{where}: unexpected panel type {p.get('type')!r}")
        if not p.get("title"):
            errors.append(f"{where}: no title")
        tg = p.get("targets") or []
        if not tg:
            errors.append(f"{where}: no query")
        refs = [t.get("refId") for t in tg]
        if len(set(refs)) != len(refs):
            errors.append(f"{where}: duplicate refIds {refs}")
        for t in tg:
            e = t.get("expr", "").strip()
            if not e:
                errors.append(f"{where}: target {t.get('refId')} has an empty expr")
            bad = dx.unknown_metrics(e, known)
            if bad:
                errors.append(f"{where}: unknown metric(s) {bad}")
    row_titles[d.get("uid")] = rows

seed = ["Nextcloud", "Collabora Online", "Keycloak", "Moodle", "Gitea", "Nexus Repository",
        "Jitsi Meet", "OpenLDAP", "PostgreSQL"]
missing = [s for s in seed if s not in row_titles.get("pes-overview", [])]
if missing:
    errors.append(f"pes-overview: no row for seed service(s) {missing}")
for uid in ("pes-overview", "pes-probe-detail", "pes-agent-health"):
    if uid not in seen_uids:
        errors.append(f"dashboard {uid} missing")

# Every expression as a recording rule, so that promtool parses it as PromQL.
rules = [{"record": f"dashboard:expr_{i}", "expr": e}
         for i, (_, _, _, e) in enumerate(dx.expressions(src))]
rules += [{"record": f"dashboard:var_{i}", "expr": sel}
          for i, (_, _, sel, _) in enumerate(dx.variable_queries(src))]
with open(sys.argv[2], "w") as f:
    yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}, f)
print(f"  {len(seen_uids)} dashboards, {len(rules)} expressions")
for e in errors:
    print("  ERROR:", e)
sys.exit(1 if errors else 0)
