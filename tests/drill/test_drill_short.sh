#!/usr/bin/env bash
# The short form of the incident drill (tests/drill/README.md), run by ctest (labels drill, deploy):
# the shipped rules (alerts/*.rules.yml) and routing (alerts/alertmanager.yml, receivers replaced
# by the drill's recorder), a real Prometheus and Alertmanager, the agent with compose/agent.yml's
# topology. Shorter than the full drill (scripts/drill.sh): the agent's intervals and timeouts
# times 1/3, Prometheus scraping and evaluating every 2 s, four scenarios. Fails unless every goal
# of issue 13 is met in each: PostgreSQL killed (1 page naming postgres, what it takes down,
# within 75 s; resolves within 60 s; 0 pages after recovery), a 20 s blip (0 pages), Nextcloud in
# maintenance (0 pages), the agent cut off from the platform (1 page, the agent's).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
AGENT="${PES_AGENT_BINARY:-$here/../../build/default/pes-agent}"
[ -x "$AGENT" ] || { echo "test_drill_short: agent binary '$AGENT' is not built" >&2; exit 1; }
for t in ip iptables prometheus prometheus-alertmanager promtool amtool psql; do
  command -v "$t" >/dev/null || { echo "test_drill_short: required tool '$t' not found (scripts/install-deps.sh)" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "test_drill_short: needs root (network namespaces)" >&2; exit 1; }
out="$(mktemp -d /tmp/pes-drill-short.XXXXXX)"
trap 'rm -rf "$out"' EXIT
/usr/bin/python3 "$here/drill.py" --agent "$AGENT" --scenarios pg-killed,blip,nc-maintenance,cut-off \
  --scale 0.3334 --prom-interval 2s --observe 45 --out "$out" --label short --check
