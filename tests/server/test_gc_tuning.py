"""The garbage collector's set-up at the server's start (`gc_tuning.py`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from awsjobs_lab.gc_tuning import (
    PYTHON_GC_THRESHOLDS,
    SERVER_GC_THRESHOLDS,
    freeze_long_lived,
    tune_garbage_collection,
)


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


def test_long_lived_objects_are_frozen_in_the_server_only(
    thresholds: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from awsjobs_lab import gc_tuning

    calls: list[str] = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(gc_tuning, "_server_tuned", False)  # a CLI's process
    freeze_long_lived()
    assert calls == []
    monkeypatch.setattr(gc_tuning, "_server_tuned", True)  # the server, after its start
    freeze_long_lived()
    assert calls == ["freeze"]
