"""model.yaml validation: clear messages naming the file and the key; the JSON schema in docs/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest
from pydantic import ValidationError

from modelserve.codecs.tensors import DATATYPES, V2_TO_NUMPY, V2_TO_TRITON
from modelserve.config.model import Datatype, ModelConfig, VersionPolicy, load_model_config
from modelserve.errors import ModelLoadError
from tests.harness import ROOT


def test_schema_in_docs_is_current() -> None:
    documented = json.loads((ROOT / "docs" / "model-config.schema.json").read_text())
    assert documented == ModelConfig.model_json_schema(), (
        "regenerate with: python -m modelserve schema > docs/model-config.schema.json"
    )


def test_datatype_lists_agree() -> None:
    assert set(get_args(Datatype)) == set(DATATYPES) == set(V2_TO_NUMPY) == set(V2_TO_TRITON)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("max_batch_size: -1\n", "max_batch_size"),
        ("inputs: [{name: x, datatype: FLOAT, shape: [1]}]\n", "inputs.0.datatype"),
        ("inputs: [{name: x, datatype: FP32, shape: [0]}]\n", "inputs.0.shape"),
        ("unknown_key: 1\n", "unknown_key"),
        ("version_policy: {latest: 1, all: true}\n", "version_policy"),
        ("entrypoint: not-valid\n", "entrypoint"),
        ("- a list\n", "expected a mapping"),
        ("inputs: [\n", "not valid YAML"),
        (
            "inputs: [{name: x, datatype: FP32, shape: [1]},"
            " {name: x, datatype: FP32, shape: [1]}]",
            "duplicate",
        ),
    ],
)
def test_bad_config_names_file_and_key(tmp_path: Path, text: str, fragment: str) -> None:
    (tmp_path / "model.yaml").write_text(text)
    with pytest.raises(ModelLoadError) as info:
        load_model_config(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "model.yaml") in message
    assert fragment in message


def test_missing_config_means_defaults(tmp_path: Path) -> None:
    config = load_model_config(tmp_path)
    assert config == ModelConfig()
    assert config.version_policy.select([1, 3, 2]) == [3]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (VersionPolicy(latest=2), [2, 5]),
        (VersionPolicy(all=True), [1, 2, 5]),
        (VersionPolicy(specific=[1, 7]), [1]),
    ],
)
def test_version_policy(policy: VersionPolicy, expected: list[int]) -> None:
    assert policy.select([5, 1, 2]) == expected


def test_dynamic_batching_false_turns_the_default_off() -> None:
    off = ModelConfig(dynamic_batching=False)
    assert off.dynamic_batching is None and off.batching_chosen()
    assert not ModelConfig().batching_chosen()
    assert ModelConfig(dynamic_batching={}).batching_chosen()
    with pytest.raises(ValidationError):
        ModelConfig(dynamic_batching=True)
