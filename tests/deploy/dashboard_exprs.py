"""Helpers shared by the deploy tests: walk the Grafana dashboards, list their PromQL
expressions, substitute Grafana's variables, and check metric names against metrics.txt."""
import json
import os
import re

# Grafana variables -> values Prometheus accepts. Multi-value template variables are used
# with =~ and become "match everything".
SUBSTITUTIONS = [
    ("$__rate_interval", "1m"),
    ("$__interval", "15s"),
    ("$__range", "1h"),
    ("$service", ".*"),
    ("$probe", ".*"),
    ("$instance", ".*"),
]

METRIC_RE = re.compile(r"\b((?:probe|pes_agent|process)_[a-z0-9_]+|probe:[a-z0-9_:]+|up)\b(?=\s*[{\[)\s]|$)")
STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"')


def dashboard_files(src):
    d = os.path.join(src, "dashboards")
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".json"))


def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def expressions(src, substitute=True):
    """(dashboard file, panel title, refId, expr) for every panel target."""
    out = []
    for path in dashboard_files(src):
        with open(path, encoding="utf-8") as f:
            dash = json.load(f)
        for p in all_panels(dash.get("panels", [])):
            for t in p.get("targets", []):
                e = t.get("expr", "")
                if substitute:
                    e = substitute_vars(e)
                out.append((os.path.basename(path), p.get("title", ""), t.get("refId", ""), e))
    return out


def variable_queries(src):
    """(dashboard file, variable name, metric selector) of every label_values() variable."""
    out = []
    for path in dashboard_files(src):
        with open(path, encoding="utf-8") as f:
            dash = json.load(f)
        for v in dash.get("templating", {}).get("list", []):
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            m = re.fullmatch(r"label_values\((.*),\s*([a-zA-Z_]+)\)", q or "")
            if m:
                out.append((os.path.basename(path), v["name"], substitute_vars(m.group(1)), m.group(2)))
    return out


def substitute_vars(expr):
    for var, val in SUBSTITUTIONS:
        expr = expr.replace(var, val)
    return expr


def known_metrics(src):
    names = set()
    with open(os.path.join(src, "tests", "deploy", "metrics.txt"), encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                names.add(line)
    return names


def unknown_metrics(expr, known):
    bare = STRING_RE.sub('""', expr)
    bad = []
    for m in METRIC_RE.finditer(bare):
        name = m.group(1)
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        if name not in known and base not in known:
            bad.append(name)
    return bad
