"""REST handlers under `/awsjobs/api/`: parse, call the service, answer JSON.

Every verb is `@tornado.web.authenticated` then `@authorized` (resource `awsjobs`). Domain
errors (errors.py) are turned into `HTTPError(status, message)` in one place, `send_error`, so
every error body is `{"message": ..., "reason": ...}`; anything unexpected is a 500 without a
traceback (APIHandler's `write_error`).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, cast, overload

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler

from .errors import AWSJobsError, InvalidRequest, NotFound
from .patterns import JOB_ID_TEXT
from .schedules.requests import check_name
from .schedules.service import ScheduleService
from .service import JobService
from .store import DEFAULT_PAGE

JOB_ID = rf"(?P<job_id>{JOB_ID_TEXT})"
_INTEGER = re.compile(r"[+-]?\d{1,18}\Z")
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: it would come back as Infinity, which is not JSON
        raise ValueError(f"the number {text[:20]} is too large")
    return value


class AWSJobsHandler(APIHandler):
    """Base of every handler: auth resource, the service, JSON in and out, error mapping."""

    auth_resource = "awsjobs"

    @property
    def service(self) -> JobService:
        return cast(JobService, self.settings["awsjobs_service"])

    async def prepare(self) -> None:  # type: ignore[override]  # as APIHandler's
        await super().prepare()
        await self.service.start()  # a no-op once started (the extension starts it at launch)

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        if exc_info is not None and isinstance(exc_info[1], AWSJobsError):
            err = exc_info[1]
            http = tornado.web.HTTPError(err.status, str(err) or err.reason, reason=err.reason)
            kwargs["exc_info"] = (tornado.web.HTTPError, http, exc_info[2])
            status_code = err.status
        super().send_error(status_code, **kwargs)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, AWSJobsError) and value.status < 500:
            self.log.info("awsjobs: %s %s: %s", value.status, self.request.uri, value)
        elif isinstance(value, AWSJobsError):
            self.log.warning("awsjobs: %s %s: %s", value.status, self.request.uri, value)
        else:
            super().log_exception(typ, value, tb)

    # -- input --------------------------------------------------------------------------------

    def json_body(self) -> Any:
        if not self.request.body:
            raise InvalidRequest("the request body must be a JSON object")
        try:
            return json.loads(
                self.request.body, parse_constant=_reject_constant, parse_float=_finite_float
            )
        except (ValueError, RecursionError) as err:
            raise InvalidRequest(f"the request body is not valid JSON: {err}") from None

    def query(self, name: str) -> str | None:
        value = self.get_query_argument(name, None)
        return value if value else None

    @overload
    def int_query(self, name: str, default: int) -> int: ...

    @overload
    def int_query(self, name: str, default: None = None) -> int | None: ...

    def int_query(self, name: str, default: int | None = None) -> int | None:
        raw = self.query(name)
        if raw is None:
            return default
        if not _INTEGER.match(raw.strip()):
            raise InvalidRequest(f"{name}: must be a whole number, not {raw!r}")
        return int(raw)

    def float_query(self, name: str, default: float) -> float:
        raw = self.query(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise InvalidRequest(f"{name}: must be a number, not {raw!r}") from None
        if not math.isfinite(value):
            raise InvalidRequest(f"{name}: must be a finite number")
        return value

    def bool_query(self, name: str, default: bool) -> bool:
        raw = self.query(name)
        if raw is None:
            return default
        value = _BOOLEANS.get(raw.strip().lower())
        if value is None:
            raise InvalidRequest(f"{name}: must be true or false, not {raw!r}")
        return value

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))


class JobsHandler(AWSJobsHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        states_raw = self.query("state")
        states = [s.strip() for s in states_raw.split(",") if s.strip()] if states_raw else None
        schedule = self.query("schedule")
        if schedule is not None:
            check_name(schedule, "schedule")
        # The page arrives encoded (store thread): the loop only writes the bytes.
        body = await self.service.list_jobs_json(
            states, self.int_query("limit", DEFAULT_PAGE), self.query("cursor"), schedule
        )
        self.set_header("Content-Type", "application/json")
        self.finish(body)

    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        job = await self.service.create_job(self.json_body())
        self.reply(job.to_dict(), 201)


class JobHandler(AWSJobsHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        job = await self.service.get_job(job_id)
        self.reply(job.to_dict())

    @tornado.web.authenticated
    @authorized
    async def delete(self, job_id: str) -> None:
        await self.service.delete_job(job_id)
        self.set_status(204)
        self.finish()


class JobStopHandler(AWSJobsHandler):
    @tornado.web.authenticated
    @authorized
    async def post(self, job_id: str) -> None:
        job = await self.service.stop_job(job_id)
        self.reply(job.to_dict(), 202)


class JobLogHandler(AWSJobsHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        offset = self.int_query("offset", 0)
        chunk = await self.service.read_log(job_id, offset, self.int_query("limit"))
        self.reply(chunk)


class ConfigHandler(AWSJobsHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        config = await self.service.config_now()
        schedules = self.settings.get("awsjobs_schedules")
        if isinstance(schedules, ScheduleService):
            config["schedules"] = schedules.describe_config()
        self.reply(config)


class InstanceTypesHandler(AWSJobsHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        defaults = self.service.options.defaults
        preview = await self.service.preview_instance(
            memory_gib=self.float_query("memory_gib", defaults.memory_gib),
            cpus=self.int_query("cpus", defaults.cpus),
            spot=self.bool_query("spot", defaults.spot),
            instance_type=self.query("instance_type"),
            gpus=self.int_query("gpus", 0),
            gpu_memory_gib=self.float_query("gpu_memory_gib", 0.0),
            gpu_model=self.query("gpu_model"),
        )
        self.reply(preview)


class InstancesHandler(AWSJobsHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply({"instances": await self.service.list_instances()})


class InstancesStopHandler(AWSJobsHandler):
    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        if not isinstance(body, dict) or set(body) != {"instance_ids"}:
            raise InvalidRequest('the request body must be {"instance_ids": [...]}')
        ids = body["instance_ids"]
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise InvalidRequest("instance_ids: must be a list of instance id strings")
        self.reply({"terminated": await self.service.terminate_instances(ids)})


class NotFoundHandler(AWSJobsHandler):
    """Every other path under the namespace (a malformed job id, an unknown endpoint): the same
    JSON 404 as every other error, behind the same authentication, rather than the server's
    HTML page."""

    def _not_found(self) -> None:
        parts = self.request.path.split("/jobs/", 1)
        if len(parts) == 2:
            job_id = parts[1].split("/", 1)[0]
            raise NotFound(f"no job {job_id[:40]!r}: a job id is 16 lowercase hexadecimal digits")
        raise NotFound(f"no such API endpoint: {self.request.path[:200]}")

    @tornado.web.authenticated
    @authorized  # the action (read, write...) follows the request's method
    async def get(self, *args: str) -> None:
        self._not_found()

    post = put = patch = delete = get


def handler_table(namespace: str = "awsjobs/api") -> list[tuple[str, type[AWSJobsHandler]]]:
    """Routes, relative to the server's base URL; anything else under the namespace is a
    JSON 404 (the last, catch-all route)."""
    return [
        (rf"{namespace}/jobs", JobsHandler),
        (rf"{namespace}/jobs/{JOB_ID}", JobHandler),
        (rf"{namespace}/jobs/{JOB_ID}/stop", JobStopHandler),
        (rf"{namespace}/jobs/{JOB_ID}/log", JobLogHandler),
        (rf"{namespace}/config", ConfigHandler),
        (rf"{namespace}/instance-types", InstanceTypesHandler),
        (rf"{namespace}/instances", InstancesHandler),
        (rf"{namespace}/instances/stop", InstancesStopHandler),
        (rf"{namespace}(?:/.*)?", NotFoundHandler),
    ]
