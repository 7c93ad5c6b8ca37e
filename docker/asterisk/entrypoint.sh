#!/bin/sh
# Puts the ARI password from the environment into ari.conf (the shipped file has a
# placeholder), then runs Asterisk in the foreground.
set -eu
if [ -z "${HITCALL_ARI_PASSWORD:-}" ]; then
    echo "HITCALL_ARI_PASSWORD is not set" >&2
    exit 2
fi
escaped=$(printf '%s' "$HITCALL_ARI_PASSWORD" | sed 's/[\\/&]/\\&/g')
sed -i "s/^password = .*/password = ${escaped}/" /etc/asterisk/ari.conf
mkdir -p /var/run/asterisk /var/spool/asterisk/recording
exec "$@"
