#!/bin/sh
# Runs once, when the postgres image creates the cluster: HitCall's owner and service
# roles (hitcall-roles.sql) in the database POSTGRES_DB.
set -eu
: "${HITCALL_DB_OWNER_PASSWORD:?set HITCALL_DB_OWNER_PASSWORD}"
: "${HITCALL_DB_PASSWORD:?set HITCALL_DB_PASSWORD}"
psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
    -v owner_password="$HITCALL_DB_OWNER_PASSWORD" -v service_password="$HITCALL_DB_PASSWORD" \
    -f /usr/local/share/hitcall/hitcall-roles.sql
