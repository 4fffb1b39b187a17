"""Instance metadata (IMDSv2) for the simulated instances, on the simulator's own port.

Each instance's sandbox has `AWSJOBS_IMDS_URL=<simulator>/awssim/imds/<instance id>/latest` in
its environment (unless the test process set one of its own), the variable the worker scripts
read instead of 169.254.169.254. Served, as on AWS:

- `PUT .../latest/api/token` (header `X-aws-ec2-metadata-token-ttl-seconds`): a session token;
- `GET .../latest/meta-data/<path>` with header `X-aws-ec2-metadata-token`: `instance-id`,
  `instance-type`, `placement/region`, `placement/availability-zone`, and any file under the
  sandbox's `meta-data/` folder (the spot notice `spot/instance-action`); 404 otherwise;
  401 without a valid token (IMDSv2 only, as the workers are launched with HttpTokens=required).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the simulator imports this module (through its machines)
    from .simulator import Simulator

PREFIX = "/awssim/imds/"
TOKEN_HEADER = "HTTP_X_AWS_EC2_METADATA_TOKEN"
TTL_HEADER = "HTTP_X_AWS_EC2_METADATA_TOKEN_TTL_SECONDS"

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


def url_of(endpoint_url: str, instance_id: str) -> str:
    """What an instance's sandbox gets as AWSJOBS_IMDS_URL."""
    return f"{endpoint_url}{PREFIX}{instance_id}/latest"


class MetadataService:
    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self.tokens: set[str] = set()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        instance_id, _, rest = environ.get("PATH_INFO", "").removeprefix(PREFIX).partition("/")
        method = environ.get("REQUEST_METHOD", "GET")
        if rest == "latest/api/token" and method == "PUT":
            if not environ.get(TTL_HEADER):
                return _text(start_response, 400, "missing the token TTL header")
            token = secrets.token_urlsafe(24)
            self.tokens.add(token)
            return _text(start_response, 200, token)
        if environ.get(TOKEN_HEADER) not in self.tokens:
            return _text(start_response, 401, "unauthorized")
        value = self._metadata(instance_id, rest.removeprefix("latest/meta-data/"))
        if value is None or not rest.startswith("latest/meta-data/"):
            return _text(start_response, 404, "not found")
        return _text(start_response, 200, value)

    def _metadata(self, instance_id: str, key: str) -> str | None:
        with self.simulator.lock:
            machine = self.simulator.world.fleet.machines.get(instance_id)
            if machine is None or machine.state != "running":
                return None
            facts = {
                "instance-id": machine.instance_id,
                "instance-type": machine.life.instance_type,
                "placement/region": machine.region,
                "placement/availability-zone": machine.life.zone,
            }
            if key in facts:
                return facts[key]
            if machine.sandbox is None or ".." in key.split("/"):
                return None
            path: Path = machine.sandbox.root / "meta-data" / key
            return path.read_text() if path.is_file() else None


def _text(start_response: StartResponse, status: int, body: str) -> list[bytes]:
    data = body.encode()
    reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}[status]
    start_response(
        f"{status} {reason}",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))],
    )
    return [data]
