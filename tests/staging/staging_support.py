"""What the staging tests share besides fixtures. (Imported by this unique name: every test
folder has a `conftest`, so `from conftest import ...` would find whichever was loaded first.)"""

from __future__ import annotations

from dataclasses import dataclass, field

BUCKET = "awsjobs-test-bucket"
JOB_ID = "0123456789abcdef"


@dataclass
class Received:
    """What moto's S3 received with a body: (operation, key, bytes) per request."""

    calls: list[tuple[str, str, int]] = field(default_factory=list)

    def bytes(self, key_prefix: str = "") -> int:
        return sum(n for _, key, n in self.calls if key.startswith(key_prefix))

    def operations(self) -> list[str]:
        return [op for op, _, _ in self.calls]
