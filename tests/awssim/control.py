"""The HTTP side: a WSGI layer in front of moto's app, on the same port.

- `/awssim/...` is the control API (JSON), for a process that did not start the simulator:

  | request | effect |
  |---|---|
  | `GET /awssim/state` | config, record (calls, faults, instance-seconds), instances, invocations |
  | `GET /awssim/config` | the configuration |
  | `POST /awssim/config` | merge a partial configuration (JSON body); answers the new one |
  | `POST /awssim/reset` | moto's state and the simulator's (configuration kept) |
  | `POST /awssim/interrupt/{instance_id}` | spot interruption: notice, then termination |
  | `POST /awssim/reboot/{instance_id}` | reboot the instance |
  | `POST /awssim/terminate/{instance_id}` | terminated by someone else |
  | `POST /awssim/invocation` | `{"command_id", "instance_id", "status_details", "response_code"}` |
  | `POST /awssim/fire-schedule/{group}/{name}` | perform an EventBridge schedule's target now |

- `/awssim/imds/{instance_id}/latest/...` is the instances' metadata service (`imds.py`).

- `/moto-api/reset` also resets the simulator (so moto's own reset keeps them in step).
- A call hit by a `LostAnswer` fault was applied; here its answer is thrown away and the
  connection reset (after the rule's delay), as when a network path drops mid-answer.
- Only 127.0.0.1 is served.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Callable, Iterable
from typing import Any

from .imds import PREFIX as IMDS_PREFIX
from .imds import MetadataService
from .schedules import UnknownSchedule
from .simulator import Simulator, UnknownInstance

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]
LOCAL = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


class SimulatorApp:
    def __init__(self, moto_app: WsgiApp, simulator: Simulator) -> None:
        self.moto_app = moto_app
        self.simulator = simulator
        self.metadata = MetadataService(simulator)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REMOTE_ADDR") not in LOCAL:
            return _json(start_response, 403, {"message": "the simulator serves 127.0.0.1 only"})
        path = environ.get("PATH_INFO", "")
        if path.startswith(IMDS_PREFIX):
            return self.metadata(environ, start_response)
        if path.startswith("/awssim/"):
            return self._control(environ, start_response, path)
        if path == "/moto-api/reset" and environ.get("REQUEST_METHOD") == "POST":
            self.simulator.reset()
            return _json(start_response, 200, {"status": "ok"})
        return self._aws(environ, start_response)

    def _aws(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        captured: list[Any] = []
        self.simulator.take_lost_answer()  # nothing left over from an earlier request
        body = b"".join(self.moto_app(environ, lambda *args: captured.append(args)))
        lost = self.simulator.take_lost_answer()
        if lost is not None:
            time.sleep(lost.delay_seconds)
            _reset_connection(environ)
            raise ConnectionResetError("awssim: answer lost on purpose")
        start_response(*captured[0])
        return [body]

    def _control(
        self, environ: Environ, start_response: StartResponse, path: str
    ) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            payload = _read_json(environ) if method == "POST" else {}
            result = self._route(method, path.removeprefix("/awssim/").strip("/"), payload)
        except (UnknownInstance, UnknownSchedule) as error:
            return _json(start_response, 404, {"message": f"unknown: {error.args[0]}"})
        except (ValueError, TypeError, KeyError) as error:
            return _json(start_response, 400, {"message": str(error)})
        if result is None:
            return _json(start_response, 404, {"message": f"no such control: {method} {path}"})
        return _json(start_response, 200, result)

    def _route(self, method: str, route: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        sim = self.simulator
        verb, _, target = route.partition("/")
        actions: dict[str, Callable[[str], None]] = {
            "interrupt": sim.interrupt_spot,
            "reboot": sim.reboot,
            "terminate": sim.terminate,
        }
        if method == "GET" and route == "state":
            return sim.state()
        if route == "config":
            if method == "POST":
                sim.configure(payload)
            return sim.config.to_json()
        if method != "POST":
            return None
        if route == "reset":
            sim.reset()
        elif verb in actions and target:
            actions[verb](target)
        elif verb == "fire-schedule" and target.count("/") == 1:
            return {"status": "ok", **sim.fire_schedule(*target.split("/"))}
        elif route == "invocation":
            sim.force_invocation(
                payload["command_id"],
                payload["instance_id"],
                payload["status_details"],
                int(payload.get("response_code", -1)),
            )
        else:
            return None
        return {"status": "ok"}


def _read_json(environ: Environ) -> dict[str, Any]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length else b""
    data = json.loads(raw or b"{}")
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


def _json(start_response: StartResponse, status: int, data: object) -> list[bytes]:
    body = json.dumps(data).encode()
    reason = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found"}[status]
    start_response(
        f"{status} {reason}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _reset_connection(environ: Environ) -> None:
    """End the connection with no answer: shut down now, and (SO_LINGER 0) reset at close.
    The socket stays open until werkzeug closes it, which it expects to do itself."""
    connection = environ.get("werkzeug.socket")
    if isinstance(connection, socket.socket):
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.shutdown(socket.SHUT_RDWR)
