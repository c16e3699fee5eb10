#!/bin/sh
# A scaler for `scaleset-listen --exec`: each event arrives as one JSON document on stdin.
#   {"event": "desired_runner_count", "count": 3}       -> print how many runners you now have
#   {"event": "job_started", "job": {...}}               -> nothing to print
#   {"event": "job_completed", "job": {...}}             -> nothing to print
# A non-zero exit leaves the message unacknowledged; it is retried, and set aside after 3 failures.
set -eu
event=$(cat)
case "$event" in
  *'"desired_runner_count"'*)
    count=$(printf '%s' "$event" | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')
    # ... start or stop runners here ...
    echo "$count" ;;
  *) : ;;
esac
