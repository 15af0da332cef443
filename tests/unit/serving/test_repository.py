"""ModelRepository with ``single_model`` (``--model-name``): the root is one model's folder, as
KServe mounts it at /mnt/models, with version folders or the artifact directly in it."""

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
