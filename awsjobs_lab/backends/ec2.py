"""EC2 + SSM backend (being built; importable now so the app can register it)."""

from __future__ import annotations

from typing import ClassVar

from traitlets import List, Unicode

from ..models import Job, Outcome
from .base import Backend, BackendNotConfigured, RecordHandle


class EC2Backend(Backend):
    """Runs each job on its own freshly launched EC2 instance, driven through SSM."""

    id: ClassVar[str] = "ec2"
    label: ClassVar[str] = "AWS EC2"

    image_id = Unicode("", help="AMI id of the worker image.").tag(config=True)
    subnet_ids = List(Unicode(), help="Subnets to launch into (one per AZ).").tag(config=True)
    efs_file_system_id = Unicode("", help="EFS file system shared with the server.").tag(
        config=True
    )

    def is_configured(self) -> bool:
        return bool(self.image_id and self.subnet_ids and self.efs_file_system_id)

    def validate(self, job: Job) -> None:
        if not self.is_configured():
            raise BackendNotConfigured("The EC2 backend is not configured yet.")

    async def launch(self, job: Job, record: RecordHandle) -> None:
        raise BackendNotConfigured("The EC2 backend is not configured yet.")

    async def wait(self, job: Job) -> Outcome:
        raise BackendNotConfigured("The EC2 backend is not configured yet.")

    async def stop(self, job: Job) -> None:
        raise BackendNotConfigured("The EC2 backend is not configured yet.")

    async def reattach(self, job: Job) -> Outcome | None:
        raise BackendNotConfigured("The EC2 backend is not configured yet.")
