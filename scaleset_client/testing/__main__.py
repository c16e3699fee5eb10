"""``python -m scaleset_client.testing``: the fake service standalone, with its control API.

    python -m scaleset_client.testing --control-port 8099 [--scale-set NAME]

Prints one JSON line on stdout (``config_url``, ``token``, ``control_url``, the servers, and the
id of each ``--scale-set`` created up front), then serves until SIGTERM or SIGINT. Point
``scaleset-listen --url`` at ``config_url`` with ``GITHUB_TOKEN`` set to ``token``, and drive
jobs and faults through the control API (see ``scaleset_client.testing.control``).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from .control import ControlServer
from .fake_service import FakeActionsService


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fake until a signal; returns the exit code (1 if strict mode saw a bad request)."""
    parser = argparse.ArgumentParser(prog="python -m scaleset_client.testing", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--control-host", default="127.0.0.1", help="control API address (default 127.0.0.1)")
    parser.add_argument("--control-port", type=int, default=0, help="control API port (default: any free port)")
    parser.add_argument("--org", default="fake-org", help="organization in the configuration URL")
    parser.add_argument("--long-poll-hold", type=float, default=2.0,
                        help="seconds an empty poll is held before 202 (real service: about 50)")
    parser.add_argument("--strict", action="store_true",
                        help="report requests the real service would refuse, and exit 1 if any came")
    parser.add_argument("--scale-set", action="append", default=[], metavar="NAME",
                        help="create this scale set up front (repeatable)")
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    fake = FakeActionsService(org=args.org, long_poll_hold=args.long_poll_hold, strict=args.strict)
    fake.start()
    control = ControlServer(fake, args.control_host, args.control_port)
    try:
        described = control.describe()
        if args.scale_set:
            import scaleset_client as sc

            with sc.Client(fake.config_url, token=fake.token) as client:
                described["scale_sets"] = {
                    name: client.create_runner_scale_set(sc.RunnerScaleSet(name=name)).id for name in args.scale_set}
        print(json.dumps(described), flush=True)
        stop.wait()
    finally:
        control.close()
        try:
            fake.close()
        except AssertionError as exc:  # strict mode: requests the service would refuse
            print(f"strict mode: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
