"""The garbage collector's set-up at the server's start (`app.tune_garbage_collection`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from awsjobs_lab.app import PYTHON_GC_THRESHOLDS, SERVER_GC_THRESHOLDS, tune_garbage_collection


@pytest.fixture
def thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_pythons_default_thresholds_become_the_servers(thresholds: None) -> None:
    gc.set_threshold(*PYTHON_GC_THRESHOLDS)
    tune_garbage_collection()
    assert gc.get_threshold() == SERVER_GC_THRESHOLDS
    assert gc.get_freeze_count() > 0  # what the started server holds is out of the way


def test_thresholds_someone_set_are_left_alone(thresholds: None) -> None:
    gc.set_threshold(2000, 5, 5)
    tune_garbage_collection()
    assert gc.get_threshold() == (2000, 5, 5)


def test_a_second_start_freezes_and_collects_nothing_more(
    thresholds: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    gc.set_threshold(*PYTHON_GC_THRESHOLDS)
    tune_garbage_collection()
    calls: list[str] = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(gc, "collect", lambda *args: calls.append("collect") or 0)
    tune_garbage_collection()
    assert calls == []
    assert gc.get_threshold() == SERVER_GC_THRESHOLDS
