"""The gate in the load path: real scikit-learn versions loaded by the repository, their gate
run against a baseline that is loaded for it (``compare_to: version:N``) or missing."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
import yaml

from modelserve.config.model import load_model_config
from modelserve.runtimes.registry import RuntimeRegistry
from modelserve.serving.gatekeeper import Baseline, run_version_gate
from modelserve.serving.model import LoadedModel
from modelserve.serving.repository import ModelRepository
from tests.harness import example_builder

build = example_builder()


@pytest.fixture
def repository(tmp_path: Path) -> Iterator[ModelRepository]:
    """iris: version 1 fitted on the truth, version 2 with a weaker fit; holdout.csv."""
    from sklearn.linear_model import LogisticRegression

    x, y = build.classification_data()
    folder = tmp_path / "iris"
    for version, c in ((1, 1.0), (2, 1e-4)):
        (folder / str(version)).mkdir(parents=True)
        sio.dump(LogisticRegression(C=c, max_iter=500).fit(x, y), folder / f"{version}/m.skops")
    with (folder / "holdout.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["a", "b", "c", "d", "target"])
        writer.writerows([*row, label] for row, label in zip(x.tolist(), y.tolist(), strict=True))
    with ThreadPoolExecutor(1) as executor:
        yield ModelRepository(tmp_path, RuntimeRegistry(plugins=[]), executor)


def configure(repository: ModelRepository, validation: dict[str, object]) -> None:
    folder = repository.root / "iris"
    (folder / "model.yaml").write_text(yaml.safe_dump({"validation": validation}))


def load(repository: ModelRepository, version: str) -> LoadedModel:
    folder = repository.root / "iris"
    config = load_model_config(folder)
    return repository.load_version("iris", folder, config, version, folder / version)


def gate(repository: ModelRepository, candidate: LoadedModel, baseline: Baseline | None):  # type: ignore[no-untyped-def]
    folder = repository.root / "iris"
    config = load_model_config(folder)
    version_dir = folder / candidate.version
    loader = repository.load_version
    return run_version_gate("iris", config, candidate, version_dir, folder, baseline, loader)


VALIDATION = {
    "data": "holdout.csv",
    "label": "target",
    "metrics": {"accuracy": {"min_absolute_change": -0.01}, "log_loss": {"max": 5}},
    "compare_to": "version:1",
}


def test_a_named_baseline_is_loaded_for_the_gate_and_judged(repository: ModelRepository) -> None:
    configure(repository, VALIDATION)
    candidate = load(repository, "2")
    report = gate(repository, candidate, Baseline("1", None))
    assert report.baseline_version == "1" and report.baseline_metrics is not None
    baseline, value = report.baseline_metrics["accuracy"], report.metrics["accuracy"]
    assert value < baseline - 0.01, "the weaker fit is worse on the holdout"
    assert report.passed is False
    assert report.failures == [
        f"accuracy {value:.4g} < {baseline - 0.01:.4g} (baseline {baseline:.4g}, "
        "min_absolute_change -0.01)"
    ]
    same = gate(repository, load(repository, "1"), Baseline("1", None))
    assert same.passed, same.failures


def test_a_named_baseline_that_does_not_exist_fails_the_gate(repository: ModelRepository) -> None:
    configure(repository, {**VALIDATION, "compare_to": "version:9"})
    report = gate(repository, load(repository, "1"), Baseline("9", None))
    assert report.passed is False
    assert report.failures == [
        "cannot compare with version:9: compare_to: version 9 has no version folder"
    ]


def test_latency_is_measured_and_a_serving_baseline_is_not_timed(
    repository: ModelRepository,
) -> None:
    configure(
        repository,
        {
            "data": "holdout.csv",
            "label": "target",
            "metrics": {"p99_latency_ms": {"max": 1000, "min_relative_change": -10.0}},
        },
    )
    serving = load(repository, "1")
    report = gate(repository, load(repository, "2"), Baseline("1", serving, None))
    assert report.failures == []
    assert 0 < report.metrics["p99_latency_ms"] < 1000
    assert report.baseline_metrics == {}, "a serving version is never timed under its traffic"
    assert report.passed and any("skipped" in c.message for c in report.checks)
    timed = gate(repository, load(repository, "2"), Baseline("1", serving, {"p99_latency_ms": 1.0}))
    assert timed.baseline_metrics == {"p99_latency_ms": 1.0}
    assert np.isfinite(timed.checks[-1].bound or np.nan)
