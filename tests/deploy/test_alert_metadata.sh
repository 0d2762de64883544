#!/usr/bin/env bash
# Every alert of alerts/*.rules.yml carries what the on-call person needs:
#  - labels: severity (critical|warning|info) and service (static, or from the probe series; then
#    every expected alert in the unit tests has it);
#  - annotations: summary, a description that names the probe (or agent instance) and a reason,
#    and a runbook_url ending in docs/runbooks/<page>.md whose file exists and has the sections
#    "What to check first", "How to confirm" and "How to fix";
#  - the expressions use only metric names of tests/deploy/metrics.txt.
# Also: every runbook page is linked by some alert.
source "$(dirname "$0")/lib.sh"
cd "$PES_SOURCE_DIR"

log "checking labels, annotations, runbooks and metric names of every alert"
PYTHONPATH=tests/deploy "$PY" - <<'PYEOF'
import glob, os, re, sys, yaml
import dashboard_exprs as dx

known = dx.known_metrics(".")
errors = []
# service labels of expected alerts in the unit tests
test_labels = {}
for tf in glob.glob("alerts/tests/*.test.yml"):
    for case in yaml.safe_load(open(tf)).get("tests", []):
        for a in case.get("alert_rule_test", []) or []:
            for e in a.get("exp_alerts") or []:
                test_labels.setdefault(a["alertname"], []).append(e.get("exp_labels", {}))
linked = set()
n = 0
for rf in sorted(glob.glob("alerts/*.rules.yml")):
    for g in yaml.safe_load(open(rf))["groups"]:
        for r in g["rules"]:
            bad = dx.unknown_metrics(r["expr"], known)
            name = r.get("alert") or r.get("record")
            if bad:
                errors.append(f"{rf}: {name}: unknown metric(s) {bad}")
            if "alert" not in r:
                continue
            n += 1
            where = f"{rf}: {name}"
            labels, ann = r.get("labels", {}), r.get("annotations", {})
            if labels.get("severity") not in ("critical", "warning", "info"):
                errors.append(f"{where}: severity {labels.get('severity')!r}")
            if "service" not in labels:
                seen = test_labels.get(name, [])
                if not seen or not all(l.get("service") for l in seen):
                    errors.append(f"{where}: no static service label and the unit tests do not "
                                  f"show one on every alert")
            for k in ("summary", "description", "runbook_url"):
                if not str(ann.get(k, "")).strip():
                    errors.append(f"{where}: annotation {k} missing")
            d = ann.get("description", "")
            if "$labels.probe" not in d and "$labels.instance" not in d and "job pes-agent" not in d:
                errors.append(f"{where}: description does not name the probe or agent")
            if "Reason:" not in d and "reason" not in d.lower():
                errors.append(f"{where}: description gives no reason")
            m = re.search(r"/docs/runbooks/([a-z0-9-]+\.md)(#[a-z0-9-]+)?$", ann.get("runbook_url", ""))
            if not m:
                errors.append(f"{where}: runbook_url {ann.get('runbook_url')!r} is not a docs/runbooks page")
                continue
            page = os.path.join("docs", "runbooks", m.group(1))
            linked.add(page)
            if not os.path.isfile(page):
                errors.append(f"{where}: runbook {page} does not exist")
                continue
            text = open(page).read()
            for sec in ("What to check first", "How to confirm", "How to fix"):
                if not re.search(r"^#+\s*" + re.escape(sec), text, re.M):
                    errors.append(f"{page}: section '{sec}' missing")
            if name not in text:
                errors.append(f"{page}: does not mention the alert {name}")
for page in glob.glob("docs/runbooks/*.md"):
    if os.path.basename(page) != "README.md" and page not in linked:
        errors.append(f"{page}: no alert links to it")
for e in errors:
    print("  ERROR:", e)
if not errors:
    print(f"  {n} alerts checked, {len(linked)} runbook pages")
sys.exit(1 if errors else 0)
PYEOF
log "PASS"
