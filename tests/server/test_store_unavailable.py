"""A job store that cannot be opened (a corrupt file, a data path that cannot be a folder):
the server still starts, and every API call is a 503 that names the file and what to do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.server.helpers import assert_error

API = ("awsjobs", "api")


@pytest.fixture(params=["corrupt", "not_a_folder"])
def awsjobs_config(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """A data path whose store cannot be opened."""
    if request.param == "corrupt":
        (tmp_path / "bad-data").mkdir()
        (tmp_path / "bad-data" / "jobs.sqlite").write_bytes(b"this is not a database" * 100)
        return {"data_path": str(tmp_path / "bad-data")}
    (tmp_path / "a-file").write_text("x")
    return {"data_path": str(tmp_path / "a-file" / "data")}


async def test_a_store_that_cannot_be_opened_is_a_503(
    jp_fetch: Any, jp_serverapp: Any, awsjobs_config: dict[str, Any]
) -> None:
    store = Path(awsjobs_config["data_path"]) / "jobs.sqlite"
    for parts in (("jobs",), ("jobs", "0123456789abcdef"), ("config",)):
        response = await jp_fetch(*API, *parts, raise_error=False)
        assert response.code == 503
        reply = json.loads(response.body)
        assert_error(503, reply, 503, str(store), "then retry")
        assert reply["reason"] == "unavailable"
    if "bad-data" in str(store):
        assert "move the file aside" in reply["message"]
