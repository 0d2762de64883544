#!/usr/bin/env bash
# The fleet drill (tests/fleet/fleet_drill.py, docs/fleet.md), run by ctest (label deploy,
# RESOURCE_LOCK deploy): three agents, two Prometheus and two clustered Alertmanagers, each in a
# network namespace of its own, the platform (PostgreSQL, a Nextcloud stand-in) behind a router
# namespace; the shipped rules and routing. Fails unless: PostgreSQL killed -> exactly one page;
# the same with one agent, one Prometheus and one Alertmanager killed; one agent's platform link
# cut -> no page; every probe run by a live agent throughout.
source "$(dirname "$0")/lib.sh"
for t in ip iptables prometheus prometheus-alertmanager promtool amtool psql; do need "$t"; done
[ "$(id -u)" -eq 0 ] || fail "needs root (network namespaces)"
AGENT="${PES_AGENT_BINARY:-$PES_SOURCE_DIR/build/default/pes-agent}"
[ -x "$AGENT" ] || fail "agent binary '$AGENT' is not built"
/usr/bin/python3 "$PES_SOURCE_DIR/tests/fleet/fleet_drill.py" --agent "$AGENT" || fail "fleet drill failed"
log "PASS"
