"""Lifecycle over a real repository, without a server: start-up loads, a reload swaps versions
beside the serving one and drains the replaced one, unload waits for the requests in flight,
load requests report failures, and polling applies a change only once the folder is stable."""

from __future__ import annotations

import asyncio
import gc
import shutil
import time
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from modelserve.errors import InvalidArgument, NotFound, Unavailable
from modelserve.serving.lifecycle import Lifecycle
from modelserve.serving.model import LoadedModel
from modelserve.types import ModelState
from tests.unit.serving_stack import Stack, open_stack, write_scale_model

ROW = {"x": np.ones((1, 2), dtype=np.float32)}


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    return tmp_path / "marks"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "repo").mkdir()
    return tmp_path / "repo"


@pytest.fixture
async def stacks(marks: Path) -> AsyncIterator[list[Stack]]:
    """Every stack a test opens is closed at its end (held requests released first)."""
    opened: list[Stack] = []
    yield opened
    (marks / "hold").unlink(missing_ok=True)
    for stack in opened:
        await stack.close()


async def start(stacks: list[Stack], repo: Path, **options: object) -> Lifecycle:
    stack = await open_stack(repo, **options)  # type: ignore[arg-type]
    stacks.append(stack)
    return stack.lifecycle


def serving(lifecycle: Lifecycle, name: str) -> dict[str, LoadedModel]:
    return {m.version: m for m in lifecycle.repository.loaded_models() if m.name == name}


def state(lifecycle: Lifecycle, name: str, version: str) -> tuple[ModelState, str]:
    rows = {(r.name, r.version): r for r in lifecycle.repository.index()}
    return rows[(name, version)].state, rows[(name, version)].reason


async def until(path: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        await asyncio.sleep(0.005)


async def test_start_loads_every_model_or_only_the_named_ones(
    repo: Path, marks: Path, stacks: list[Stack]
) -> None:
    for name in ("a", "b"):
        write_scale_model(repo, marks, name)
    everything = await start(stacks, repo)
    assert set(serving(everything, "a")) == set(serving(everything, "b")) == {"1"}
    named = await start(stacks, repo, mode="explicit", names=["a"])
    assert set(serving(named, "a")) == {"1"} and serving(named, "b") == {}
    assert state(named, "b", "") == (ModelState.UNAVAILABLE, "not loaded")


async def test_a_reload_swaps_at_once_and_drains_the_replaced_version(
    repo: Path, marks: Path, stacks: list[Stack]
) -> None:
    folder = write_scale_model(repo, marks, "m", (1,))
    lifecycle = await start(stacks, repo)
    old = serving(lifecycle, "m")["1"]
    (marks / "hold").touch()
    in_flight = asyncio.ensure_future(old.batcher.submit(ROW, 1))
    await until(marks / "started-m-1")
    (folder / "2").mkdir()
    await lifecycle.load("m")
    assert set(serving(lifecycle, "m")) == {"2"}, "the new version serves at once"
    assert ("m", "1") not in {(r.name, r.version) for r in lifecycle.repository.index()}
    await asyncio.sleep(0.05)  # the drain starts on the loop's next turn
    with pytest.raises(Unavailable):  # the replaced version takes no new work
        await asyncio.wait_for(old.batcher.submit(ROW, 1), 5)
    assert not in_flight.done() and not (marks / "unloaded-m-1").exists(), "it drains first"
    (marks / "hold").unlink()
    done = await asyncio.wait_for(in_flight, 10)
    np.testing.assert_array_equal(done.outputs["y"], [[1.0, 1.0]])  # answered by version 1
    await until(marks / "unloaded-m-1")


async def test_unload_waits_for_the_requests_in_flight(
    repo: Path, marks: Path, stacks: list[Stack]
) -> None:
    write_scale_model(repo, marks, "m", (1,))
    lifecycle = await start(stacks, repo, mode="explicit")
    model = serving(lifecycle, "m")["1"]
    (marks / "hold").touch()
    in_flight = asyncio.ensure_future(model.batcher.submit(ROW, 1))
    await until(marks / "started-m-1")
    unloading = asyncio.ensure_future(lifecycle.unload("m"))
    await asyncio.sleep(0.05)
    assert state(lifecycle, "m", "1") == (ModelState.UNLOADING, "")
    assert not unloading.done()
    with pytest.raises(Unavailable):
        await asyncio.wait_for(model.batcher.submit(ROW, 1), 5)
    (marks / "hold").unlink()
    await asyncio.wait_for(unloading, 10)
    assert in_flight.done() and in_flight.exception() is None
    assert state(lifecycle, "m", "1") == (ModelState.UNAVAILABLE, "unloaded")
    assert (marks / "unloaded-m-1").exists()
    await lifecycle.load_on_request("m", None)  # and it can come back
    assert set(serving(lifecycle, "m")) == {"1"}


async def test_the_heap_is_frozen_once_loaded_and_an_unloaded_cycle_still_goes(
    repo: Path, marks: Path, stacks: list[Stack]
) -> None:
    """What the server holds for good is moved out of the collector's sight (gc.freeze) once
    the models are loaded; an unload collects first, so cyclic garbage frozen meanwhile goes."""
    write_scale_model(repo, marks, "m", (1,))
    gc.unfreeze()
    lifecycle = await start(stacks, repo, mode="explicit")
    assert gc.get_freeze_count() > 0

    class Node:
        me: object = None

    cycle = Node()
    cycle.me = cycle  # reference-cycle garbage frozen with what was loaded
    probe = weakref.finalize(cycle, lambda: None)
    gc.freeze()
    del cycle
    gc.collect()
    assert probe.alive, "a frozen cycle is not collected (what freezing is for)"
    await lifecycle.unload("m")
    assert not probe.alive, "the unloaded version's reference cycle was kept by the freeze"
    assert gc.get_freeze_count() > 0


async def test_a_load_freezes_what_it_built_without_a_full_collection(
    repo: Path, marks: Path, stacks: list[Stack]
) -> None:
    """A load freezes the objects it created after a young collection: the frozen heap is not
    undone and walked again (100-200 ms with the frameworks of the examples), and a load that
    builds nothing collects and freezes nothing."""
    for name in ("a", "b"):
        write_scale_model(repo, marks, name)
    lifecycle = await start(stacks, repo, mode="explicit", names=["a"])
    collections: list[tuple[int, int]] = []  # (generation, objects frozen when it starts)

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append((info["generation"], gc.get_freeze_count()))

    frozen = gc.get_freeze_count()
    gc.disable()  # the only collections are those the lifecycle asks for
    gc.callbacks.append(watch)
    try:
        await lifecycle.load_on_request("b", None)
        after_load = list(collections)
        await lifecycle.load_on_request("b", None)  # unchanged: nothing built
    finally:
        gc.callbacks.remove(watch)
        gc.enable()
    assert after_load, "the load collected nothing before freezing"
    assert all(generation < 2 for generation, _ in after_load), after_load
    assert all(count > 0 for _, count in after_load), "the freeze was undone"
    assert collections == after_load, "a load that built nothing collected"
    assert gc.get_freeze_count() > frozen
    model = serving(lifecycle, "b")["1"]
    assert gc.is_tracked(model) and all(o is not model for o in gc.get_objects()), (
        "the loaded version is still in a generation the collector walks"
    )


async def test_load_requests_report_what_failed(
    repo: Path, marks: Path, stacks: list[Stack]
) -> None:
    folder = write_scale_model(repo, marks, "m", (1,))
    (repo / "bad" / "1").mkdir(parents=True)
    (repo / "bad" / "model.yaml").write_text("max_batch_size: -3\n")
    lifecycle = await start(stacks, repo, mode="explicit", names=["m"])
    with pytest.raises(NotFound, match="no model folder 'absent'"):
        await lifecycle.load_on_request("absent", None)
    with pytest.raises(InvalidArgument, match="max_batch_size"):
        await lifecycle.load_on_request("bad", None)
    (folder / "2").mkdir()
    (folder / "2" / "broken").write_text("x")
    with pytest.raises(InvalidArgument, match=r"version 2: .*broken.*still serving version 1"):
        await lifecycle.load_on_request("m", None)
    assert set(serving(lifecycle, "m")) == {"1"}


async def test_listeners_hear_of_every_change_and_a_failing_one_does_not_stop_it(
    repo: Path, marks: Path, stacks: list[Stack], caplog: pytest.LogCaptureFixture
) -> None:
    write_scale_model(repo, marks, "m", (1,))
    lifecycle = await start(stacks, repo, mode="explicit", names=[])
    heard: list[set[str]] = []

    async def listener() -> None:
        heard.append(set(serving(lifecycle, "m")))

    async def broken() -> None:
        raise RuntimeError("listener bug")

    lifecycle.listeners += [broken, listener]
    await lifecycle.load("m")
    await lifecycle.unload("m")
    assert heard == [{"1"}, set()]
    assert "a model-change listener failed" in caplog.text


async def test_wait_idle_and_stop(repo: Path, marks: Path, stacks: list[Stack]) -> None:
    write_scale_model(repo, marks, "m", (1,))
    lifecycle = await start(stacks, repo)
    assert await lifecycle.wait_idle(1)
    (marks / "hold").touch()
    in_flight = asyncio.ensure_future(serving(lifecycle, "m")["1"].batcher.submit(ROW, 1))
    await until(marks / "started-m-1")
    assert not await lifecycle.wait_idle(0.1), "a held request keeps it busy"
    (marks / "hold").unlink()
    assert await lifecycle.wait_idle(10)
    await in_flight
    await lifecycle.stop()
    assert lifecycle.repository.loaded_models() == []
    assert (marks / "unloaded-m-1").exists()


async def test_polling_applies_a_change_once_it_was_stable_for_a_poll(
    repo: Path, marks: Path, stacks: list[Stack]
) -> None:
    folder = write_scale_model(repo, marks, "m", (1,))
    lifecycle = await start(stacks, repo, mode="poll")
    await lifecycle.poll_once()
    assert set(serving(lifecycle, "m")) == {"1"}, "nothing changed"
    # a version being copied: each poll sees a different folder, so nothing is applied
    (folder / "2").mkdir()
    await lifecycle.poll_once()
    (folder / "2" / "part-1.bin").write_bytes(b"1")
    await lifecycle.poll_once()
    assert set(serving(lifecycle, "m")) == {"1"}
    # the copy is done: the next poll sees the same folder again and applies it
    await lifecycle.poll_once()
    assert set(serving(lifecycle, "m")) == {"2"}
    await until(marks / "unloaded-m-1")
    # a new model is picked up the same way, and a removed one is unloaded and forgotten
    write_scale_model(repo, marks, "n", (1,))
    await lifecycle.poll_once()
    assert serving(lifecycle, "n") == {}
    await lifecycle.poll_once()
    assert set(serving(lifecycle, "n")) == {"1"}
    shutil.rmtree(folder)
    await lifecycle.poll_once()
    assert lifecycle.repository.names() == ["n"]
    assert (marks / "unloaded-m-2").exists()
