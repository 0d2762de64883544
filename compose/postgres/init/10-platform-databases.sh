#!/bin/bash
# Runs once, when the postgres container initialises an empty data volume
# (/docker-entrypoint-initdb.d). Creates one role and database per platform service, and the
# read-only monitoring role pes-agent logs in with. Passwords come from the compose secrets.
set -euo pipefail

secret() { tr -d '\n' < "/run/secrets/$1"; }

create_db() { # role database secret-name
  local role=$1 db=$2 pw
  pw=$(secret "$3")
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
       -v role="$role" -v db="$db" -v pw="$pw" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'pw';
CREATE DATABASE :"db" OWNER :"role" ENCODING 'UTF8';
SQL
}

create_db keycloak  keycloak  keycloak_db_password
create_db nextcloud nextcloud nextcloud_db_password
create_db moodle    moodle    moodle_db_password
create_db gitea     gitea     gitea_db_password

# pes-agent: may connect and read the statistics views (connection saturation, recovery state).
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
     -v pw="$(secret pes_monitor_db_password)" <<'SQL'
CREATE ROLE pes_monitor LOGIN PASSWORD :'pw' CONNECTION LIMIT 5;
GRANT pg_monitor TO pes_monitor;
SQL
