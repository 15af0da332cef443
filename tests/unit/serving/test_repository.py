"""ModelRepository: folders and names, prepare/begin/build/commit (new and changed versions
LOADING beside the serving ones, swapped in at once, the replaced ones handed back to drain),
fingerprints, states and reasons, unload and forget. And with ``single_model``
(``--model-name``): the root is one model's folder, as KServe mounts it at /mnt/models, with
version folders or the artifact directly in it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from modelserve.errors import InvalidArgument, ModelLoadError, NotFound
from modelserve.runtimes.registry import RuntimeRegistry
from modelserve.serving.repository import LoadPlan, ModelRepository
from modelserve.types import ModelState
from tests.harness import write_python_model
from tests.unit.serving_stack import write_scale_model


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as pool:
        yield pool


def build(repository: ModelRepository, name: str) -> LoadPlan:
    """A load's first three steps, as the lifecycle takes them (prepare, begin, build)."""
    plan = repository.prepare(name)
    repository.begin(plan)
    return repository.build(plan)


def load(repository: ModelRepository, name: str) -> list[str]:
    plan = build(repository, name)
    assert not plan.error, plan.error
    assert not plan.failed, plan.failed
    repository.commit(plan)
    return repository.ready_versions(name)


def test_artifact_at_the_root_is_version_1(
    model_repo: Path, tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    shutil.copy(model_repo / "iris_onnx" / "1" / "model.onnx", tmp_path / "model.onnx")
    repository = ModelRepository(tmp_path, RuntimeRegistry(), executor, single_model="iris")
    assert repository.discover() == ["iris"]
    assert repository.model_dir("iris") == tmp_path
    assert load(repository, "iris") == ["1"]
    [row] = repository.index()
    assert (row.name, row.version, row.state) == ("iris", "1", ModelState.READY)
    model = repository.get_entry("iris").versions["1"].model
    assert model is not None and model.platform == "onnxruntime_onnx"
    for slot in repository.get_entry("iris").versions.values():
        assert slot.model is not None
        slot.model.runtime.unload()


def test_version_folders_at_the_root_follow_the_policy(
    model_repo: Path, tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    for version in ("1", "2", "3"):
        shutil.copytree(model_repo / "iris_onnx" / "1", tmp_path / version)
    (tmp_path / "model.yaml").write_text("version_policy: {latest: 2}\n")
    (tmp_path / "notes").mkdir()  # neither a version nor the flat layout: ignored
    repository = ModelRepository(tmp_path, RuntimeRegistry(), executor, single_model="iris")
    assert load(repository, "iris") == ["2", "3"]
    for model in repository.loaded_models():
        model.runtime.unload()


def test_python_model_at_the_root_with_its_config(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    folder = write_python_model(
        tmp_path,
        "ignored",
        """
        class Double:
            def predict(self, inputs):
                return {"y": inputs["x"] * 2}
        """,
        {
            "max_batch_size": 4,
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
        },
        versions=(),
        entrypoint="Double",
    )
    repository = ModelRepository(folder, RuntimeRegistry(), executor, single_model="double")
    assert load(repository, "double") == ["1"]
    [model] = repository.loaded_models()
    assert model.config.max_batch_size == 4


def test_other_names_are_not_found_and_bad_names_refused(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    repository = ModelRepository(tmp_path, RuntimeRegistry(), executor, single_model="iris")
    with pytest.raises(NotFound, match="serves 'iris'"):
        repository.model_dir("other")
    with pytest.raises(InvalidArgument):
        repository.model_dir("../etc")


def test_an_empty_folder_says_what_is_missing(tmp_path: Path, executor: ThreadPoolExecutor) -> None:
    repository = ModelRepository(tmp_path, RuntimeRegistry(), executor, single_model="iris")
    plan = build(repository, "iris")
    assert plan.failed["1"] and "cannot tell the runtime" in plan.failed["1"]
    missing = ModelRepository(tmp_path / "absent", RuntimeRegistry(), executor, "iris")
    with pytest.raises(ModelLoadError, match="not a directory"):
        missing.discover()


def test_without_single_model_an_artifact_needs_a_version_folder(
    model_repo: Path, tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    (tmp_path / "iris").mkdir()
    shutil.copy(model_repo / "iris_onnx" / "1" / "model.onnx", tmp_path / "iris" / "model.onnx")
    repository = ModelRepository(tmp_path, RuntimeRegistry(), executor)
    plan = build(repository, "iris")
    assert "no version folder" in plan.error


# ---- a repository of several models --------------------------------------------------------


@pytest.fixture
def repository(tmp_path: Path, executor: ThreadPoolExecutor) -> Iterator[ModelRepository]:
    made = ModelRepository(tmp_path / "repo", RuntimeRegistry(), executor)
    (tmp_path / "repo").mkdir()
    yield made
    for model in made.loaded_models():
        model.runtime.unload()


def states(repository: ModelRepository) -> dict[tuple[str, str], tuple[ModelState, str]]:
    return {(r.name, r.version): (r.state, r.reason) for r in repository.index()}


def test_discover_lists_model_folders_with_valid_names(
    repository: ModelRepository, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    for name in ("b", "a.v2", "c-d_e"):
        write_scale_model(repository.root, marks, name)
    (repository.root / ".hidden").mkdir()
    (repository.root / "has space").mkdir()
    (repository.root / "notes.txt").write_text("not a model")
    assert repository.discover() == ["a.v2", "b", "c-d_e"]


@pytest.mark.parametrize("name", ["..", "a/b", "", "a..b", "/etc", "a b"])
def test_names_that_could_leave_the_repository_are_refused(
    repository: ModelRepository, name: str
) -> None:
    with pytest.raises(InvalidArgument, match="not a valid model name"):
        repository.model_dir(name)


def test_a_load_shows_loading_then_ready_and_serves_the_selected_versions(
    repository: ModelRepository, tmp_path: Path
) -> None:
    write_scale_model(
        repository.root, tmp_path / "marks", "m", (1, 2, 3), version_policy={"latest": 2}
    )
    plan = repository.prepare("m")
    assert (plan.selected, plan.error) == (["2", "3"], "")
    assert states(repository) == {}, "prepare touches no record"
    repository.begin(plan)
    assert plan.to_load == ["2", "3"]
    assert states(repository) == {
        ("m", "2"): (ModelState.LOADING, ""),
        ("m", "3"): (ModelState.LOADING, ""),
    }
    repository.build(plan)
    assert set(plan.loaded) == {"2", "3"} and plan.failed == {}
    assert repository.ready_versions("m") == [], "build touches no record either"
    assert repository.commit(plan) == []
    assert repository.ready_versions("m") == ["2", "3"]
    assert states(repository) == {
        ("m", "2"): (ModelState.READY, ""),
        ("m", "3"): (ModelState.READY, ""),
    }
    assert sorted(m.version for m in repository.loaded_models()) == ["2", "3"]
    assert [r.version for r in repository.index(ready_only=True)] == ["2", "3"]


def test_unchanged_versions_are_not_loaded_again_and_changed_ones_are_swapped(
    repository: ModelRepository, tmp_path: Path
) -> None:
    folder = write_scale_model(
        repository.root, tmp_path / "marks", "m", (1, 2), version_policy={"all": True}
    )
    assert load(repository, "m") == ["1", "2"]
    first = {m.version: m for m in repository.loaded_models()}
    again = repository.prepare("m")
    repository.begin(again)
    assert again.to_load == [], "nothing changed"
    (folder / "2" / "weights.bin").write_bytes(b"new weights")
    changed = build(repository, "m")
    assert changed.to_load == ["2"]
    assert repository.commit(changed) == [first["2"]], "the replaced model, to drain"
    now = {m.version: m for m in repository.loaded_models()}
    assert now["1"] is first["1"] and now["2"] is not first["2"]
    assert states(repository)[("m", "2")] == (ModelState.READY, "")


def test_the_fingerprint_follows_every_file_of_the_model(
    repository: ModelRepository, tmp_path: Path
) -> None:
    folder = write_scale_model(repository.root, tmp_path / "marks", "m")
    prints = [repository.model_fingerprint("m")]
    assert repository.model_fingerprint("m") == prints[0], "stable while nothing changes"
    (folder / "2").mkdir()  # an empty version folder counts
    prints.append(repository.model_fingerprint("m"))
    (folder / "2" / "a.bin").write_bytes(b"1")
    prints.append(repository.model_fingerprint("m"))
    (folder / "2" / "a.bin").write_bytes(b"12")  # a size (or mtime) change
    prints.append(repository.model_fingerprint("m"))
    assert len(set(prints)) == 4
    (folder / "2" / "a.bin").unlink()
    assert repository.model_fingerprint("m") == prints[1], "back to the empty folder"
    assert repository.model_fingerprint("absent") == ""


def test_a_failing_new_version_leaves_the_serving_one(
    repository: ModelRepository, tmp_path: Path
) -> None:
    folder = write_scale_model(repository.root, tmp_path / "marks", "m", (1,))
    assert load(repository, "m") == ["1"]
    (folder / "2").mkdir()
    (folder / "2" / "broken").write_text("x")
    plan = build(repository, "m")  # latest 1 selects version 2 only
    assert plan.selected == ["2"] and "this version is broken" in plan.failed["2"]
    assert repository.commit(plan) == []
    assert repository.ready_versions("m") == ["1"]
    rows = states(repository)
    assert rows[("m", "2")][0] is ModelState.UNAVAILABLE
    assert "this version is broken" in rows[("m", "2")][1]
    assert rows[("m", "1")][0] is ModelState.READY
    assert "still serving because no selected version is READY" in rows[("m", "1")][1]


def test_changed_files_that_fail_keep_the_old_model_serving(
    repository: ModelRepository, tmp_path: Path
) -> None:
    folder = write_scale_model(repository.root, tmp_path / "marks", "m", (1,))
    assert load(repository, "m") == ["1"]
    [serving] = repository.loaded_models()
    (folder / "1" / "broken").write_text("x")
    plan = build(repository, "m")
    assert repository.commit(plan) == []
    assert repository.loaded_models() == [serving]
    state, reason = states(repository)[("m", "1")]
    assert state is ModelState.READY
    assert reason.startswith("the new files failed to load, still serving the old ones")


def test_a_version_leaving_the_policy_is_retired_once_another_serves(
    repository: ModelRepository, tmp_path: Path
) -> None:
    folder = write_scale_model(
        repository.root, tmp_path / "marks", "m", (1, 2), version_policy={"all": True}
    )
    assert load(repository, "m") == ["1", "2"]
    [old] = [m for m in repository.loaded_models() if m.version == "1"]
    (folder / "model.yaml").write_text(
        (folder / "model.yaml").read_text().replace("all: true", "latest: 1")
    )
    plan = build(repository, "m")
    retired = repository.commit(plan)
    assert old in retired
    assert repository.ready_versions("m") == ["2"]
    assert ("m", "1") not in states(repository)
    for model in retired:
        model.runtime.unload()


def test_a_bad_config_names_the_file_relative_to_the_repository(
    repository: ModelRepository, tmp_path: Path
) -> None:
    (repository.root / "bad" / "1").mkdir(parents=True)
    (repository.root / "bad" / "model.yaml").write_text("max_batch_size: -3\n")
    (repository.root / "empty").mkdir()
    for name in ("bad", "empty"):
        plan = build(repository, name)
        assert plan.error
        assert repository.commit(plan) == []
    rows = states(repository)
    state, reason = rows[("bad", "")]
    assert state is ModelState.UNAVAILABLE and "max_batch_size" in reason
    assert "bad/model.yaml" in reason and str(tmp_path) not in reason
    assert rows[("empty", "")][0] is ModelState.UNAVAILABLE
    assert "no version folder" in rows[("empty", "")][1]
    assert repository.ready_versions("bad") == []


def test_register_unload_and_forget(repository: ModelRepository, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    write_scale_model(repository.root, marks, "m", (1,))
    repository.register("idle")
    assert states(repository) == {("idle", ""): (ModelState.UNAVAILABLE, "not loaded")}
    assert load(repository, "m") == ["1"]
    [model] = repository.begin_unload("m")
    assert states(repository)[("m", "1")] == (ModelState.UNLOADING, "")
    assert repository.ready_versions("m") == [] and repository.loaded_models() == []
    model.runtime.unload()
    assert (marks / "unloaded-m-1").exists()
    repository.finish_unload("m")
    assert states(repository)[("m", "1")] == (ModelState.UNAVAILABLE, "unloaded")
    repository.forget("m")
    with pytest.raises(NotFound, match="Request for unknown model: 'm' is not found"):
        repository.get_entry("m")
    assert repository.names() == ["idle"]
