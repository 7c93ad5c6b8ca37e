#!/bin/sh
# Installs Asterisk 22 and SIPp from Debian packages. One source of truth: the
# Dockerfile runs it inside the image, `hitcall sandbox` runs it inside the chroot.
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get -o Acquire::Check-Valid-Until=false update
apt-get install -y --no-install-recommends \
    asterisk asterisk-modules asterisk-core-sounds-en-gsm asterisk-moh-opsound-gsm sip-tester
# Asterisk refuses to start with "modules.conf invalid or missing" unless root owns these.
for d in /etc/asterisk /var/lib/asterisk /var/log/asterisk /var/spool/asterisk /var/cache/asterisk /usr/share/asterisk; do
    [ -e "$d" ] && chown -R root:root "$d"
done
asterisk -V
