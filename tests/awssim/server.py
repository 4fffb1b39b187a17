"""`SimulatedAWS`: moto in server mode on 127.0.0.1 with the simulator in front of it."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from . import dispatch
from .config import SimConfig
from .control import SimulatorApp
from .record import Record
from .simulator import Simulator

LOG = logging.getLogger(__name__)


class _QuietHandler(MotoRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """No access log line per call: a chaos run makes thousands."""


class _Server(ThreadedMotoServer):
    """moto's threaded server with the simulator's WSGI layer around moto's app."""

    def __init__(self, simulator: Simulator, port: int) -> None:
        super().__init__(ip_address="127.0.0.1", port=port, verbose=False)
        self.simulator = simulator

    def _server_entry(self) -> None:
        app = SimulatorApp(DomainDispatcherApplication(create_backend_app), self.simulator)
        self._server = make_server(
            self._ip_address, self._port, app, True, request_handler=_QuietHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()


class SimulatedAWS:
    """A simulated AWS on 127.0.0.1 (see README.md for every switch).

    >>> with SimulatedAWS({"clock": {"boot_seconds": 0.2}}) as aws:
    ...     client = session.create_client("ec2", endpoint_url=aws.endpoint_url, ...)

    One per process (it patches moto's dispatcher). `config` is a SimConfig or its JSON form.
    """

    def __init__(self, config: SimConfig | Mapping[str, Any] | None = None, port: int = 0) -> None:
        self.config = config if isinstance(config, SimConfig) else SimConfig.from_json(config)
        self.port = port
        self._own_sandbox = self.config.worker.sandbox_dir is None
        sandbox = self.config.worker.sandbox_dir or tempfile.mkdtemp(prefix="awssim-")
        self.sandbox_root = Path(sandbox)
        self.simulator = Simulator(self.config, self.sandbox_root)
        self._server: _Server | None = None
        self._stopping = threading.Event()
        self._ticker: threading.Thread | None = None

    # -- start and stop ----------------------------------------------------------------------
    def start(self) -> SimulatedAWS:
        dispatch.install(self.simulator)
        self._server = _Server(self.simulator, self.port)
        self._server.start()
        self.simulator.serve_at(self.endpoint_url)
        self._stopping.clear()
        self._ticker = threading.Thread(target=self._tick, name="awssim-clock", daemon=True)
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._ticker is not None:
            self._ticker.join()
        self.simulator.shutdown()
        if self._server is not None:
            self._server.stop()
            self._server = None
        dispatch.uninstall()
        if self._own_sandbox:
            shutil.rmtree(self.sandbox_root, ignore_errors=True)

    def __enter__(self) -> SimulatedAWS:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def _tick(self) -> None:
        while not self._stopping.wait(self.config.clock.tick_seconds):
            try:
                self.simulator.tick()
            except Exception:  # keep the clock going; the next call or tick retries
                LOG.exception("awssim: a clock tick failed")

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("start() the simulator first")
        host, port = self._server.get_host_and_port()
        return f"http://{host}:{port}"

    # -- switches and levers (the same as the HTTP control API) -------------------------------
    def reset(self) -> None:
        """Empty moto and the simulator (instances' processes killed); config unchanged."""
        self.simulator.reset()

    def configure(self, changes: Mapping[str, Any]) -> None:
        """Merge a partial configuration (JSON form), e.g. `{"clock": {"boot_seconds": 1}}`."""
        self.simulator.configure(changes)

    def interrupt_spot(self, instance_id: str) -> None:
        self.simulator.interrupt_spot(instance_id)

    def reboot(self, instance_id: str) -> None:
        self.simulator.reboot(instance_id)

    def terminate(self, instance_id: str) -> None:
        """AWS-side termination by someone else (StateReason Client.UserInitiatedShutdown)."""
        self.simulator.terminate(instance_id)

    def settle(self, *ids: str) -> None:
        """End the eventual-consistency windows of these instances, images or commands now."""
        self.simulator.settle(list(ids))

    def fire_schedule(self, group: str, name: str) -> list[str]:
        """Perform an EventBridge Scheduler schedule's target now, as AWS does at its time
        (`schedules.py`); the ids of the instances it launched."""
        return list(self.simulator.fire_schedule(group, name)["instance_ids"])

    def force_invocation(
        self, command_id: str, instance_id: str, status_details: str, response_code: int = -1
    ) -> None:
        self.simulator.force_invocation(command_id, instance_id, status_details, response_code)

    def sandbox(self, instance_id: str) -> Path:
        """The folder standing for the instance's disks (markers, boot log, shim calls)."""
        return self.sandbox_root / instance_id

    @property
    def record(self) -> Record:
        return self.simulator.record

    def state(self) -> dict[str, Any]:
        return self.simulator.state()


def control(endpoint_url: str, route: str, payload: Mapping[str, Any] | None = None) -> Any:
    """Call the control API of a simulator in another process: `control(url, "state")` GETs,
    with a payload (even `{}`) it POSTs."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(
        f"{endpoint_url}/awssim/{route}",
        data=data,
        method="GET" if data is None else "POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())
