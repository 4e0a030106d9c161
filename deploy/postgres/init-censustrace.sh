#!/bin/bash
# Runs once, when the postgres volume is first created: censustrace's role and databases (warehouse,
# lineage store, and Marquez's for the optional profile). Passwords come from the environment (.env).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v ct_password="$CENSUSTRACE_DB_PASSWORD" -v mq_password="${MARQUEZ_DB_PASSWORD:-$CENSUSTRACE_DB_PASSWORD}" <<'SQL'
CREATE ROLE censustrace LOGIN PASSWORD :'ct_password';
CREATE DATABASE warehouse OWNER censustrace;
CREATE DATABASE lineage OWNER censustrace;
CREATE ROLE marquez LOGIN PASSWORD :'mq_password';
CREATE DATABASE marquez OWNER marquez;
SQL
