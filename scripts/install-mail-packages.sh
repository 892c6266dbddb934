#!/usr/bin/env bash
# Install the Debian packages the mail tests need (and shellcheck, for make actionlint; systemd, for
# systemd-analyze verify of contrib/systemd), without
# starting the system daemons.
# Idempotent: returns at once when everything is installed.
set -euo pipefail
packages=(postfix dovecot-core swaks libsasl2-modules shellcheck systemd)  # shellcheck: make actionlint; systemd: systemd-analyze for contrib/systemd
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "need root to install: ${missing[*]}" >&2
  exit 1
fi
# Without systemd, postinst would start the SYSTEM postfix on :25 through invoke-rc.d unless
# policy-rc.d says no (exit 101). Keep an existing policy; otherwise add one for this install only.
policy=/usr/sbin/policy-rc.d
added_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"; added_policy=1
fi
trap '[ "$added_policy" = 1 ] && rm -f "$policy"' EXIT
debconf-set-selections <<'DEBCONF'
postfix postfix/main_mailer_type select Local only
postfix postfix/mailname string gateway.localdomain
DEBCONF
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}"
