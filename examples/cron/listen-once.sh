#!/bin/sh
# Run by cron every minute: handle what is queued, remember where we stopped, and skip the run
# entirely (exit 4) while the state file says the service is down or the last run still holds it.
#
#   * * * * * /opt/scaleset/listen-once.sh >> /var/log/scaleset/linux-x64.log 2>&1
#
# The environment file holds plain NAME=value lines (no "export"), for example:
#   GITHUB_TOKEN=ghp_...
#   SCALESET_CONFIG_URL=https://github.com/my-org
# `set -a` exports every variable it assigns, so scaleset-listen sees them. The token stays out of
# the command line (visible in `ps`). Any scaleset-listen variable (SCALESET_NAME,
# SCALESET_MAX_RUNNERS, SCALESET_STATE_FILE, SCALESET_EXEC, ...) set there overrides the defaults below.
set -eu
ENV_FILE=${SCALESET_ENV_FILE:-/etc/scaleset/env}
set -a
. "$ENV_FILE"
set +a
: "${SCALESET_NAME:=linux-x64}"
: "${SCALESET_MAX_RUNNERS:=10}"
: "${SCALESET_STATE_FILE:=/var/lib/scaleset/linux-x64.json}"
: "${SCALESET_EXEC:=/opt/scaleset/scale.sh}"
: "${SCALESET_START_JITTER:=10}"
export SCALESET_NAME SCALESET_MAX_RUNNERS SCALESET_STATE_FILE SCALESET_EXEC SCALESET_START_JITTER
status=0
scaleset-listen --once --duration 45 --log-format json || status=$?
# 4 is a deliberate skip (service known down, or the previous run still active): not a failure.
[ "$status" -eq 4 ] && exit 0
exit "$status"
