#!/usr/bin/env bash
# Creates compose/secrets/<name> with a random value for every secret the compose files use
# that does not exist yet (existing files are kept, so it is safe to re-run). Put your own
# values in the files instead where you have them (e.g. smtp_password).
set -euo pipefail
dir="$(cd "$(dirname "$0")" && pwd)/secrets"
mkdir -p "$dir"
chmod 700 "$dir"
names=(
  postgres_password pes_monitor_db_password keycloak_db_password keycloak_admin_password
  pes_agent_client_secret nextcloud_db_password nextcloud_admin_password collabora_admin_password
  moodle_db_password moodle_admin_password gitea_db_password ldap_admin_password
  jicofo_auth_password jvb_auth_password grafana_admin_password smtp_password
)
for n in "${names[@]}"; do
  f="$dir/$n"
  if [ ! -s "$f" ]; then
    # 24 random bytes, URL-safe, no newline problems in any consumer.
    openssl rand -base64 24 | tr '+/' '-_' | tr -d '=\n' > "$f"
    echo "created $f"
  fi
  # The directory is private (0700); the files must be readable by the containers' non-root
  # users, to which compose bind-mounts them one by one.
  chmod 644 "$f"
done
