#!/bin/sh
# Run by cron every minute: handle what is queued, remember where we stopped, and skip the run
# entirely (exit 4) while the state file says the service is down.
#
#   * * * * * /opt/scaleset/listen-once.sh >> /var/log/scaleset/linux.log 2>&1
#
# GITHUB_TOKEN comes from the environment file, never from the command line (visible in `ps`).
set -eu
. /etc/scaleset/env                      # GITHUB_TOKEN=..., SCALESET_CONFIG_URL=https://github.com/my-org
exec scaleset-listen \
    --scale-set-name linux-x64 \
    --max-runners 10 \
    --state-file /var/lib/scaleset/linux-x64.json \
    --once --duration 45 --start-jitter 10 \
    --exec /opt/scaleset/scale.sh \
    --log-format json
