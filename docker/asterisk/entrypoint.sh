#!/bin/sh
# Puts the ARI password and the FastAGI secret from the environment into ari.conf and
# extensions.conf (the shipped files have placeholders), then runs Asterisk in the foreground.
set -eu
if [ -z "${HITCALL_ARI_PASSWORD:-}" ]; then
    echo "HITCALL_ARI_PASSWORD is not set" >&2
    exit 2
fi
# The secret travels in the FastAGI URL's query: URL-safe characters only (as HitCall checks).
if ! printf '%s' "${HITCALL_AGI_SECRET:-}" | grep -Eqx '[A-Za-z0-9._~-]{16,256}'; then
    echo "HITCALL_AGI_SECRET must be 16-256 characters of A-Z a-z 0-9 . _ ~ -" >&2
    exit 2
fi
escaped=$(printf '%s' "$HITCALL_ARI_PASSWORD" | sed 's/[\\/&]/\\&/g')
sed -i "s/^password = .*/password = ${escaped}/" /etc/asterisk/ari.conf
sed -i "s/^HITCALL_AGI_SECRET *=.*/HITCALL_AGI_SECRET = ${HITCALL_AGI_SECRET}/" /etc/asterisk/extensions.conf
mkdir -p /var/run/asterisk /var/spool/asterisk/recording
exec "$@"
