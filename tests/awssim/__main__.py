"""`python -m tests.awssim --port N [--config JSON]`: a simulated AWS as its own process.

Prints its URL on the first line of stdout (`http://127.0.0.1:N`), then serves until SIGTERM
or SIGINT. Point clients at it with `AWS_ENDPOINT_URL` and dummy credentials; flip switches
with the control API (`POST <url>/awssim/config`, see README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from types import FrameType

from .server import SimulatedAWS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.awssim", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0: any free port (default)")
    parser.add_argument("--config", default="{}", help="the configuration, as JSON")
    args = parser.parse_args(argv)
    # Nothing here may reach real AWS, whatever the caller's environment holds.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ[name] = "testing"
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with SimulatedAWS(json.loads(args.config), port=args.port) as aws:
        print(aws.endpoint_url, flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
