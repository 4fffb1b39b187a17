"""REST handlers of schedules under `/awsjobs/api/`: `schedules`, `schedules/{name}`,
`schedules/{name}/run` and `schedule-preview`. Authentication, JSON and the error mapping are
the base handler's (handlers.py); this module only parses and calls the ScheduleService."""

from __future__ import annotations

from typing import cast

import tornado.web
from jupyter_server.auth.decorator import authorized

from .handlers import AWSJobsHandler
from .schedules.service import ScheduleService

# Any segment: a malformed name is a 404 that says the naming rule (the service checks it).
SCHEDULE = r"(?P<name>[^/]+)"


class ScheduleHandlerBase(AWSJobsHandler):
    @property
    def schedules(self) -> ScheduleService:
        return cast(ScheduleService, self.settings["awsjobs_schedules"])

    async def prepare(self) -> None:  # type: ignore[override]  # as the base handler's
        await super().prepare()
        await self.schedules.start()  # a no-op once started


class SchedulesHandler(ScheduleHandlerBase):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply({"schedules": await self.schedules.list_schedules()})

    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        self.reply(await self.schedules.create(self.json_body()), 201)


class ScheduleHandler(ScheduleHandlerBase):
    @tornado.web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        self.reply(await self.schedules.get(name))

    @tornado.web.authenticated
    @authorized
    async def patch(self, name: str) -> None:
        self.reply(await self.schedules.patch(name, self.json_body()))

    @tornado.web.authenticated
    @authorized
    async def delete(self, name: str) -> None:
        await self.schedules.delete(name)
        self.set_status(204)
        self.finish()


class ScheduleRunHandler(ScheduleHandlerBase):
    @tornado.web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        job = await self.schedules.run_now(name)
        self.reply(job.to_dict(), 201)


class SchedulePreviewHandler(ScheduleHandlerBase):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(self.schedules.preview(self.query("cron"), self.query("timezone")))


def schedule_handler_table(
    namespace: str = "awsjobs/api",
) -> list[tuple[str, type[AWSJobsHandler]]]:
    """Routes, relative to the server's base URL; listed before the job routes' catch-all."""
    return [
        (rf"{namespace}/schedules", SchedulesHandler),
        (rf"{namespace}/schedules/{SCHEDULE}", ScheduleHandler),
        (rf"{namespace}/schedules/{SCHEDULE}/run", ScheduleRunHandler),
        (rf"{namespace}/schedule-preview", SchedulePreviewHandler),
    ]
