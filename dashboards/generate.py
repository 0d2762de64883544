#!/usr/bin/env python3
"""Writes the Grafana dashboards of pes-agent (dashboards/*.json) from one description.

The JSON files are committed and provisioned as they are; edit this script and run
`python3 dashboards/generate.py` to change them (tests/deploy/test_dashboards.sh fails when the
committed JSON differs from what this script writes). Schema: Grafana 10+ (schemaVersion 38).
Every panel queries the one provisioned datasource (uid pes-prometheus,
compose/grafana/provisioning/datasources/prometheus.yml).
"""
import json
import os
import sys

DS = {"type": "prometheus", "uid": "pes-prometheus"}

# The nine seed services of the platform, with the `service` label compose/agent.yml gives them.
SEED_SERVICES = [
    ("nextcloud", "Nextcloud"),
    ("collabora", "Collabora Online"),
    ("keycloak", "Keycloak"),
    ("moodle", "Moodle"),
    ("gitea", "Gitea"),
    ("nexus", "Nexus Repository"),
    ("jitsi", "Jitsi Meet"),
    ("openldap", "OpenLDAP"),
    ("postgresql", "PostgreSQL"),
]

SEL = 'service=~"$service", probe=~"$probe"'


class Board:
    """Lays panels out left to right, 24 columns wide, and numbers them."""

    def __init__(self):
        self.panels = []
        self.next_id = 1
        self.x = 0
        self.y = 0
        self.row_h = 0

    def _place(self, w, h):
        if self.x + w > 24:
            self.x = 0
            self.y += self.row_h
            self.row_h = 0
        pos = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def row(self, title):
        if self.x:
            self.y += self.row_h
        self.x, self.row_h = 0, 0
        self.panels.append({
            "id": self.next_id, "type": "row", "title": title, "collapsed": False,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": [],
        })
        self.next_id += 1
        self.y += 1

    def add(self, panel, w, h):
        panel["id"] = self.next_id
        self.next_id += 1
        panel["gridPos"] = self._place(w, h)
        self.panels.append(panel)


def target(expr, legend="", instant=False, fmt="time_series", ref="A"):
    t = {"refId": ref, "datasource": DS, "expr": expr, "legendFormat": legend,
         "range": not instant, "instant": instant, "format": fmt, "editorMode": "code"}
    return t


def targets(*exprs, instant=False, fmt="time_series"):
    """exprs: (expr, legend) pairs."""
    return [target(e, l, instant, fmt, chr(ord("A") + i)) for i, (e, l) in enumerate(exprs)]


def thresholds(*steps):
    """steps: (value or None, color); the first has value None (the base)."""
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


UP_MAPPINGS = [{"type": "value", "options": {
    "0": {"text": "DOWN", "color": "red", "index": 0},
    "1": {"text": "UP", "color": "green", "index": 1}}}]


def stat(title, tgts, unit="none", mappings=None, th=None, description="", decimals=None,
         color_mode="value", text_mode="auto"):
    defaults = {"unit": unit, "mappings": mappings or [],
                "thresholds": th or thresholds((None, "green")), "color": {"mode": "thresholds"}}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {"type": "stat", "title": title, "description": description, "datasource": DS,
            "targets": tgts, "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": color_mode, "graphMode": "none", "justifyMode": "auto",
                        "orientation": "auto", "textMode": text_mode, "wideLayout": True}}


def timeseries(title, tgts, unit="none", description="", stack=False, th=None, minimum=None):
    custom = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10 if not stack else 40,
              "showPoints": "never", "spanNulls": False,
              "stacking": {"mode": "normal" if stack else "none", "group": "A"}}
    defaults = {"unit": unit, "custom": custom, "color": {"mode": "palette-classic"},
                "thresholds": th or thresholds((None, "green"))}
    if minimum is not None:
        defaults["min"] = minimum
    return {"type": "timeseries", "title": title, "description": description, "datasource": DS,
            "targets": tgts, "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "table", "placement": "right",
                                   "showLegend": True, "calcs": ["lastNotNull", "max"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def table(title, tgts, description="", rename=None, exclude=("Time",), unit="none",
          mappings=None, th=None):
    excl = {name: True for name in exclude}
    return {"type": "table", "title": title, "description": description, "datasource": DS,
            "targets": tgts,
            "fieldConfig": {"defaults": {"unit": unit, "mappings": mappings or [],
                                         "thresholds": th or thresholds((None, "green")),
                                         "custom": {"align": "auto",
                                                    "cellOptions": {"type": "color-text"}}},
                            "overrides": []},
            "options": {"showHeader": True, "cellHeight": "sm"},
            "transformations": [{"id": "organize", "options": {
                "excludeByName": excl, "renameByName": rename or {}}}]}


def gauge(title, tgts, unit, th, description=""):
    return {"type": "gauge", "title": title, "description": description, "datasource": DS,
            "targets": tgts,
            "fieldConfig": {"defaults": {"unit": unit, "min": 0, "max": 1, "thresholds": th,
                                         "color": {"mode": "thresholds"}}, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "showThresholdLabels": False, "showThresholdMarkers": True}}


def state_timeline(title, tgts, mappings, description=""):
    return {"type": "state-timeline", "title": title, "description": description,
            "datasource": DS, "targets": tgts,
            "fieldConfig": {"defaults": {"mappings": mappings, "color": {"mode": "thresholds"},
                                         "thresholds": thresholds((None, "red"), (1, "green"))},
                            "overrides": []},
            "options": {"showValue": "never", "mergeValues": True, "rowHeight": 0.8,
                        "legend": {"showLegend": False, "displayMode": "list",
                                   "placement": "bottom"}}}


def query_var(name, label, query, all_value=".*"):
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "definition": query,
            "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "refresh": 2, "sort": 1, "multi": True, "includeAll": True, "allValue": all_value,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "options": [], "hide": 0, "regex": "", "skipUrlSync": False}


def variables(extra=()):
    return {"list": [
        query_var("service", "Service", "label_values(probe_up, service)"),
        query_var("probe", "Probe", 'label_values(probe_up{service=~"$service"}, probe)'),
        *extra,
    ]}


def dashboard(uid, title, description, board, templating, refresh="30s", time_from="now-6h"):
    return {
        "uid": uid, "title": title, "description": description, "tags": ["pes", "pes-agent"],
        "editable": True, "graphTooltip": 1, "timezone": "browser", "schemaVersion": 38,
        "version": 1, "refresh": refresh, "time": {"from": time_from, "to": "now"},
        "timepicker": {}, "fiscalYearStartMonth": 0, "liveNow": False, "weekStart": "",
        "annotations": {"list": []},
        "links": [{"title": "PES dashboards", "type": "dashboards", "tags": ["pes"],
                   "asDropdown": True, "includeVars": True, "keepTime": True,
                   "icon": "external link", "targetBlank": False, "tooltip": "", "url": ""}],
        "templating": templating, "panels": board.panels,
    }


# --------------------------------------------------------------------------------------------
def availability_expr(sel):
    """Share of successful runs over the dashboard range, from probe_runs_total. A probe that
    never succeeded has no result="success" series: "or 0 * total" makes it 0, not absent."""
    total = f"sum by (probe) (increase(probe_runs_total{{{sel}}}[$__range]))"
    ok = f'sum by (probe) (increase(probe_runs_total{{{sel}, result="success"}}[$__range]))'
    return f"({ok} or 0 * {total}) / {total}"


def overview():
    b = Board()
    b.row("Summary")
    b.add(stat("Probes up", targets((f"count(probe_up{{{SEL}}} == 1) or vector(0)", "")),
               th=thresholds((None, "green")),
               description="Probes whose damped state (probe_up) is up."), 4, 4)
    b.add(stat("Probes down", targets((f"count(probe_up{{{SEL}}} == 0) or vector(0)", "")),
               th=thresholds((None, "green"), (1, "red")),
               description="Probes whose damped state (probe_up) is down."), 4, 4)
    b.add(stat("Availability (range)", targets((
        f'sum(increase(probe_runs_total{{{SEL}, result="success"}}[$__range])) '
        f'/ sum(increase(probe_runs_total{{{SEL}}}[$__range]))', "")),
        unit="percentunit", decimals=2,
        th=thresholds((None, "red"), (0.99, "orange"), (0.995, "green")),
        description="Successful runs / all runs of the selected probes over the time range."),
        4, 4)
    b.add(stat("Failed runs (range)", targets((
        f'sum(increase(probe_runs_total{{{SEL}, result="failure"}}[$__range])) or vector(0)',
        "")), decimals=0, th=thresholds((None, "green"), (1, "orange")),
        description="Failed runs of the selected probes over the time range."), 4, 4)
    b.add(stat("Slowest probe p95", targets((
        f"max(histogram_quantile(0.95, sum by (probe, le) "
        f"(rate(probe_run_duration_seconds_bucket{{{SEL}}}[$__rate_interval]))))", "")),
        unit="s", th=thresholds((None, "green"), (2, "orange"), (5, "red")),
        description="95th percentile run duration of the slowest selected probe."), 4, 4)
    b.add(stat("Dependencies down", targets((
        f'count(probe_dependency_info{{{SEL}}} and on (depends_on, instance) '
        f'label_replace(probe_up == 0, "depends_on", "$1", "probe", "(.+)")) or vector(0)', "")),
        th=thresholds((None, "green"), (1, "red")),
        description="depends_on edges whose dependency is down (their dependents' alerts "
                    "are inhibited in Alertmanager)."), 4, 4)

    b.add(table("All probes", targets(
        (f"max by (probe, service, type) (probe_up{{{SEL}}})", ""),
        (availability_expr(SEL).replace("sum by (probe)", "sum by (probe, service, type)"), ""),
        (f"histogram_quantile(0.95, sum by (probe, service, type, le) "
         f"(rate(probe_run_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))", ""),
        (f"max by (probe, service, type) (probe_state_change_timestamp_seconds{{{SEL}}}) * 1000",
         ""),
        instant=True, fmt="table"),
        description="Every probe: damped state, availability over the range, p95 run duration, "
                    "time of the last state change.",
        rename={"Value #A": "up", "Value #B": "availability", "Value #C": "p95 duration",
                "Value #D": "last change"}) | {
        "transformations": [
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {"excludeByName": {"Time": True}, "renameByName": {
                "Value #A": "up", "Value #B": "availability", "Value #C": "p95 duration (s)",
                "Value #D": "last state change"}}}]} | {
        "fieldConfig": {"defaults": {"custom": {"align": "auto",
                                                "cellOptions": {"type": "auto"}}},
                        "overrides": [
            {"matcher": {"id": "byName", "options": "up"}, "properties": [
                {"id": "mappings", "value": UP_MAPPINGS},
                {"id": "custom.cellOptions", "value": {"type": "color-background"}}]},
            {"matcher": {"id": "byName", "options": "availability"}, "properties": [
                {"id": "unit", "value": "percentunit"}, {"id": "decimals", "value": 2}]},
            {"matcher": {"id": "byName", "options": "last state change"}, "properties": [
                {"id": "unit", "value": "dateTimeFromNow"}]}]}}, 24, 8)

    b.add(table("Dependency view: failures downstream of a failed dependency", targets(
        (f'max by (probe, service, depends_on) (probe_dependency_info{{{SEL}}} '
         f'and on (depends_on, instance) '
         f'label_replace(probe_up == 0, "depends_on", "$1", "probe", "(.+)"))', ""),
        instant=True, fmt="table"),
        description="Each row: a probe whose dependency (depends_on) is down right now. Its own "
                    "failures are downstream of that dependency, and Alertmanager inhibits its "
                    "alerts (docs/alerting.md).",
        exclude=("Time", "Value")), 12, 7)
    b.add(table("Dependency edges and the dependency's state", targets(
        (f'max by (probe, depends_on) (probe_dependency_info{{{SEL}}} '
         f'* on (depends_on, instance) group_left () '
         f'label_replace(probe_up, "depends_on", "$1", "probe", "(.+)"))', ""),
        instant=True, fmt="table"),
        description="Every depends_on edge of the configuration (probe_dependency_info) with "
                    "the damped state of the dependency.",
        rename={"Value": "dependency up"}, mappings=UP_MAPPINGS,
        th=thresholds((None, "red"), (1, "green"))), 12, 7)

    for service, title in SEED_SERVICES:
        sel = f'service="{service}", probe=~"$probe"'
        b.row(title)
        b.add(stat("State", targets((f"max by (probe) (probe_up{{{sel}}})", "{{probe}}"),
                                    instant=True),
                   mappings=UP_MAPPINGS, th=thresholds((None, "red"), (1, "green")),
                   color_mode="background",
                   description=f"Damped state (probe_up) of the {title} probes."), 4, 5)
        b.add(stat("Availability (range)", targets((availability_expr(sel), "{{probe}}"),
                                                   instant=True),
                   unit="percentunit", decimals=2,
                   th=thresholds((None, "red"), (0.99, "orange"), (0.995, "green")),
                   description="Successful runs / all runs over the time range "
                               "(probe_runs_total)."), 4, 5)
        b.add(timeseries("Run duration", targets(
            (f"histogram_quantile(0.95, sum by (probe, le) "
             f"(rate(probe_run_duration_seconds_bucket{{{sel}}}[$__rate_interval])))",
             "{{probe}} p95"),
            (f"histogram_quantile(0.5, sum by (probe, le) "
             f"(rate(probe_run_duration_seconds_bucket{{{sel}}}[$__rate_interval])))",
             "{{probe}} p50")), unit="s", minimum=0,
            description="Run duration percentiles from probe_run_duration_seconds."), 10, 5)
        b.add(table("Last failure", targets(
            (f"max by (probe, reason) (probe_last_failure_info{{{sel}}} == 1)", ""),
            (f"max by (probe) (probe_last_run_timestamp_seconds{{{sel}}}) * 1000", ""),
            instant=True, fmt="table"),
            description="Reason of each probe's last failed run (probe_last_failure_info) and "
                        "when it last ran.") | {
            "transformations": [
                {"id": "merge", "options": {}},
                {"id": "organize", "options": {
                    "excludeByName": {"Time": True, "Value #A": True},
                    "renameByName": {"reason": "last failure", "Value #B": "last run"}}}],
            "fieldConfig": {"defaults": {"custom": {"align": "auto",
                                                    "cellOptions": {"type": "auto"}}},
                            "overrides": [{"matcher": {"id": "byName", "options": "last run"},
                                           "properties": [{"id": "unit",
                                                           "value": "dateTimeFromNow"}]}]}},
            6, 5)

    return dashboard("pes-overview", "PES platform overview",
                     "State, availability, latency and failures of every seed service, and which "
                     "failures are downstream of which.", b, variables())


def detail():
    b = Board()
    b.row("All probes")
    b.add(timeseries("Failures by reason", targets(
        (f"sum by (probe, reason) (increase(probe_failures_total{{{SEL}}}[$__rate_interval]))",
         "{{probe}} {{reason}}")), description="Failed runs per probe and reason "
        "(probe_failures_total).", stack=True, minimum=0), 12, 7)
    b.add(state_timeline("Run result", targets(
        (f"max by (probe) (probe_success{{{SEL}}})", "{{probe}}")), UP_MAPPINGS,
        description="Result of the last run (probe_success) over time."), 12, 7)

    b.row("HTTP")
    b.add(timeseries("HTTP request phases", targets(
        (f"max by (probe, phase) (probe_http_duration_seconds{{{SEL}}})",
         "{{probe}} {{phase}}")), unit="s", stack=True, minimum=0,
        description="Time of the last request per phase: resolve, connect, tls, processing, "
                    "transfer (probe_http_duration_seconds)."), 12, 8)
    b.add(table("Status code and certificate", targets(
        (f"max by (probe) (probe_http_status_code{{{SEL}}})", ""),
        (f"min by (probe) (probe_ssl_earliest_cert_expiry{{{SEL}}} > 0) - time()", ""),
        (f"max by (probe) (probe_http_content_length{{{SEL}}})", ""),
        instant=True, fmt="table"),
        description="Last HTTP status, time until the earliest certificate expires (warning "
                    "below 14 days, critical below 3), response size.") | {
        "transformations": [
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {"excludeByName": {"Time": True}, "renameByName": {
                "Value #A": "status", "Value #B": "certificate expires in",
                "Value #C": "content length"}}}],
        "fieldConfig": {"defaults": {"custom": {"align": "auto",
                                                "cellOptions": {"type": "auto"}}},
                        "overrides": [
            {"matcher": {"id": "byName", "options": "certificate expires in"}, "properties": [
                {"id": "unit", "value": "s"},
                {"id": "thresholds", "value": thresholds(
                    (None, "red"), (3 * 86400, "orange"), (14 * 86400, "green"))},
                {"id": "custom.cellOptions", "value": {"type": "color-background"}}]},
            {"matcher": {"id": "byName", "options": "content length"}, "properties": [
                {"id": "unit", "value": "bytes"}]}]}}, 12, 8)
    b.add(timeseries("Certificate expiry", targets(
        (f"min by (probe) ((probe_ssl_earliest_cert_expiry{{{SEL}}} > 0) - time()) / 86400",
         "{{probe}}")), unit="d",
        th=thresholds((None, "red"), (3, "orange"), (14, "green")),
        description="Days until the earliest certificate of the chain expires "
                    "(probe_ssl_earliest_cert_expiry)."), 24, 6)

    b.row("Keycloak")
    b.add(timeseries("Token flow steps", targets(
        (f"max by (probe, step) (probe_keycloak_step_duration_seconds{{{SEL}}})",
         "{{probe}} {{step}}")), unit="s", stack=True, minimum=0,
        description="Duration of each step of the last run: discovery, token, JWKS, verify "
                    "(probe_keycloak_step_duration_seconds)."), 12, 7)
    b.add(timeseries("Access token lifetime", targets(
        (f"min by (probe) (probe_keycloak_token_expires_in_seconds{{{SEL}}})", "{{probe}}")),
        unit="s", th=thresholds((None, "red"), (60, "green"), (3600, "orange")),
        description="expires_in of the last issued token (alerts below 60s and above 1h)."),
        8, 7)
    b.add(stat("JWKS keys", targets(
        (f"max by (probe) (probe_keycloak_jwks_keys{{{SEL}}})", "{{probe}}"), instant=True),
        th=thresholds((None, "red"), (1, "green")),
        description="Signing keys published by the realm (probe_keycloak_jwks_keys)."), 4, 7)

    b.row("PostgreSQL")
    b.add(gauge("Connection saturation", targets(
        (f"max by (probe) (probe_postgres_connections_ratio{{{SEL}}})", "{{probe}}"),
        instant=True), "percentunit",
        thresholds((None, "green"), (0.8, "orange"), (0.95, "red")),
        description="Connections in use / max_connections (alerts above 80% and 95%)."), 6, 7)
    b.add(timeseries("Connect and query time", targets(
        (f"max by (probe) (probe_postgres_connect_duration_seconds{{{SEL}}})",
         "{{probe}} connect"),
        (f"max by (probe) (probe_postgres_query_duration_seconds{{{SEL}}})",
         "{{probe}} query")), unit="s", minimum=0,
        description="Time to connect and to run the probe's query in the last run."), 10, 7)
    b.add(table("Server", targets(
        (f"max by (probe, version) (probe_postgres_info{{{SEL}}})", ""),
        (f"max by (probe) (probe_postgres_in_recovery{{{SEL}}})", ""),
        instant=True, fmt="table"),
        description="Server version (probe_postgres_info) and whether it is a standby "
                    "(probe_postgres_in_recovery).") | {
        "transformations": [
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {"excludeByName": {"Time": True, "Value #A": True},
                                           "renameByName": {"Value #B": "in recovery"}}}]},
        8, 7)

    b.row("LDAP")
    b.add(timeseries("Bind and search time", targets(
        (f"max by (probe) (probe_ldap_bind_duration_seconds{{{SEL}}})", "{{probe}} bind"),
        (f"max by (probe) (probe_ldap_search_duration_seconds{{{SEL}}})", "{{probe}} search")),
        unit="s", minimum=0, description="Duration of the bind and of the search of the last run."),
        12, 7)
    b.add(stat("Entries found", targets(
        (f"max by (probe) (probe_ldap_search_entries{{{SEL}}})", "{{probe}}"), instant=True),
        description="Entries returned by the probe's search (probe_ldap_search_entries)."), 6, 7)
    b.add(stat("Last LDAP result code", targets(
        (f"max by (probe) (probe_ldap_result_code{{{SEL}}})", "{{probe}}"), instant=True),
        mappings=[{"type": "value", "options": {
            "0": {"text": "0 success", "color": "green", "index": 0},
            "49": {"text": "49 invalid credentials", "color": "red", "index": 1},
            "32": {"text": "32 no such object", "color": "red", "index": 2}}}],
        th=thresholds((None, "green"), (1, "red")),
        description="Result code of the last LDAP operation; 49 is a failed bind."), 6, 7)

    b.row("Jitsi")
    b.add(state_timeline("Components", targets(
        (f"max by (probe, component) (probe_jitsi_component_up{{{SEL}}})",
         "{{probe}} {{component}}")), UP_MAPPINGS,
        description="State of each Jitsi component checked by the probe: web, BOSH, websocket, "
                    "jicofo, JVB, STUN (probe_jitsi_component_up)."), 12, 7)
    b.add(timeseries("Component check time", targets(
        (f"max by (probe, component) (probe_jitsi_component_duration_seconds{{{SEL}}})",
         "{{probe}} {{component}}")), unit="s", minimum=0,
        description="Duration of each component check in the last run."), 12, 7)

    b.row("Built-in health checks (Gitea, Nexus)")
    b.add(state_timeline("Gitea health checks", targets(
        (f"max by (probe, check) (probe_gitea_check_up{{{SEL}}})", "{{probe}} {{check}}")),
        UP_MAPPINGS, description="Checks reported by Gitea's /api/healthz."), 12, 6)
    b.add(state_timeline("Nexus status checks", targets(
        (f"max by (probe, check) (probe_nexus_check_up{{{SEL}}})", "{{probe}} {{check}}")),
        UP_MAPPINGS, description="Checks reported by Nexus' status endpoints."), 12, 6)

    return dashboard("pes-probe-detail", "PES probe detail",
                     "Per probe type: HTTP phases and certificates, Keycloak token flow, "
                     "PostgreSQL saturation, LDAP bind/search, Jitsi components.", b, variables())


def agent_health():
    b = Board()
    ins = 'instance=~"$instance"'
    b.row("Agent")
    b.add(stat("Version", targets((f"max by (version) (pes_agent_build_info{{{ins}}})",
                                   "{{version}}"), instant=True),
               text_mode="name", description="pes_agent_build_info"), 4, 4)
    b.add(stat("Uptime", targets((f"time() - max(process_start_time_seconds{{{ins}}})", "")),
               unit="s", description="Time since the agent process started."), 4, 4)
    b.add(stat("Last reload", targets(
        (f"min(pes_agent_config_last_reload_successful{{{ins}}})", "")),
        mappings=[{"type": "value", "options": {
            "0": {"text": "FAILED", "color": "red", "index": 0},
            "1": {"text": "OK", "color": "green", "index": 1}}}],
        th=thresholds((None, "red"), (1, "green")), color_mode="background",
        description="Whether the last configuration (re)load succeeded; a failed reload keeps "
                    "the previous configuration running."), 4, 4)
    b.add(stat("Config loaded", targets(
        (f"time() - max(pes_agent_config_last_reload_success_timestamp_seconds{{{ins}}})", "")),
        unit="s", description="Time since the configuration was last loaded successfully."),
        4, 4)
    b.add(stat("Probes configured", targets(
        (f"sum(pes_agent_probes_configured{{{ins}}})", "")),
        th=thresholds((None, "red"), (1, "green")), description="pes_agent_probes_configured"),
        4, 4)
    b.add(stat("Probes in flight", targets((f"sum(pes_agent_probes_in_flight{{{ins}}})", "")),
               description="Runs started and not yet finished."), 4, 4)

    b.row("Scheduling")
    b.add(timeseries("Schedule lag", targets(
        (f"histogram_quantile(0.99, sum by (instance, le) "
         f"(rate(pes_agent_schedule_lag_seconds_bucket{{{ins}}}[$__rate_interval])))",
         "{{instance}} p99"),
        (f"histogram_quantile(0.5, sum by (instance, le) "
         f"(rate(pes_agent_schedule_lag_seconds_bucket{{{ins}}}[$__rate_interval])))",
         "{{instance}} p50")), unit="s", minimum=0,
        th=thresholds((None, "green"), (1, "red")),
        description="How late runs start compared to their schedule (alert: p99 above 1s)."),
        12, 7)
    b.add(timeseries("Probes in flight", targets(
        (f"sum by (instance) (pes_agent_probes_in_flight{{{ins}}})", "{{instance}}")),
        minimum=0, description="pes_agent_probes_in_flight over time."), 12, 7)
    b.add(timeseries("Runs per second by probe", targets(
        (f"sum by (probe) (rate(probe_runs_total{{{ins}, {SEL}}}[$__rate_interval]))",
         "{{probe}}")), unit="ops", stack=True, minimum=0,
        description="The load each selected probe puts on the agent."), 12, 7)
    b.add(timeseries("Run duration p95 by probe", targets(
        (f"histogram_quantile(0.95, sum by (probe, le) "
         f"(rate(probe_run_duration_seconds_bucket{{{ins}, {SEL}}}[$__rate_interval])))",
         "{{probe}}")), unit="s", minimum=0,
        description="Slow probes hold workers longer."), 12, 7)

    b.row("Process")
    b.add(timeseries("CPU", targets(
        (f"rate(process_cpu_seconds_total{{{ins}}}[$__rate_interval])", "{{instance}}")),
        unit="percentunit", minimum=0, description="CPU time per second (1 = one core)."), 8, 7)
    b.add(timeseries("Resident memory", targets(
        (f"process_resident_memory_bytes{{{ins}}}", "{{instance}}")), unit="bytes", minimum=0,
        description="process_resident_memory_bytes"), 8, 7)
    b.add(timeseries("Open file descriptors", targets(
        (f"process_open_fds{{{ins}}}", "{{instance}}")), minimum=0,
        description="Sockets and files held open; steady growth means a leak."), 8, 7)

    inst = query_var("instance", "Agent", "label_values(pes_agent_build_info, instance)")
    return dashboard("pes-agent-health", "PES agent health",
                     "Is the monitoring itself healthy: scheduling lag, probes in flight, "
                     "configuration reloads, CPU and memory.", b, variables([inst]))


DASHBOARDS = {
    "pes-overview.json": overview,
    "pes-probe-detail.json": detail,
    "pes-agent-health.json": agent_health,
}


def render(fn):
    return json.dumps(fn(), indent=2, sort_keys=False) + "\n"


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    for name, fn in DASHBOARDS.items():
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            f.write(render(fn))
        print(f"wrote {os.path.join(out_dir, name)}")


if __name__ == "__main__":
    main()
