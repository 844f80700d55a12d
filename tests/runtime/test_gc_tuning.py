"""``tune_gc``: the thresholds it sets, what it freezes, and ``undo``."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

import actors
import runtime
from runtime.gc_tuning import DEFAULT_THRESHOLDS, tune_gc


@pytest.fixture(autouse=True)
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)
    gc.unfreeze()


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_it_sets_the_thresholds_freezes_what_lives_and_undo_restores_both() -> None:
    before = gc.get_threshold()
    alive = [Node() for _ in range(100)]
    tuning = tune_gc()
    assert gc.get_threshold() == DEFAULT_THRESHOLDS
    assert tuning.previous_thresholds == before
    assert tuning.frozen >= 100
    assert gc.get_freeze_count() >= tuning.frozen
    assert all(not gc.is_finalized(n) for n in alive)
    tuning.undo()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_garbage_from_before_is_collected_not_frozen() -> None:
    gc.disable()
    try:
        Node()  # unreachable now, kept alive by its cycle until a collection
        tuning = tune_gc()
        assert gc.collect() == 0  # nothing left: tune_gc collected it before freezing
        assert tuning.frozen == gc.get_freeze_count()
    finally:
        gc.enable()


def test_without_freeze_only_the_thresholds_change() -> None:
    tuning = tune_gc((10_000, 20, 30), freeze=False)
    assert gc.get_threshold() == (10_000, 20, 30)
    assert tuning.frozen == 0
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize("thresholds", [(0, 10, 10), (1, -1, 10), (1, 10, -1)])
def test_thresholds_that_would_disable_or_break_collection_are_refused(
    thresholds: tuple[int, int, int],
) -> None:
    before = gc.get_threshold()
    with pytest.raises(ValueError, match="thresholds"):
        tune_gc(thresholds)
    assert gc.get_threshold() == before


def test_the_lowest_allowed_thresholds_are_taken() -> None:
    tune_gc((1, 0, 0), freeze=False)
    assert gc.get_threshold() == (1, 0, 0)


def test_it_is_public_in_actors_and_runtime() -> None:
    assert actors.tune_gc is runtime.tune_gc is tune_gc
