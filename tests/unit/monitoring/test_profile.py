"""Reference profiles from CSV, JSONL, NPZ and Parquet files, and their cache."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelserve.monitoring.profile import (
    MAX_VALUES,
    PROFILE_FILE,
    Profile,
    build_profile,
    load_or_build,
    read_columns,
)


def test_every_format_reads_the_same_columns(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text("x,color\n1,red\n2.5,\n,blue\n")
    (tmp_path / "r.jsonl").write_text(
        '{"x": 1, "color": "red"}\n{"x": 2.5, "color": null}\n{"x": null, "color": "blue"}\n'
    )
    pq.write_table(
        pa.table({"x": [1.0, 2.5, None], "color": ["red", None, "blue"]}), tmp_path / "r.parquet"
    )
    for name in ("r.csv", "r.jsonl", "r.parquet"):
        columns = read_columns(tmp_path / name)
        assert columns == {"x": [1.0, 2.5, None], "color": ["red", None, "blue"]}, name
    np.savez(tmp_path / "r.npz", x=np.arange(6, dtype=np.float32).reshape(3, 2))
    assert read_columns(tmp_path / "r.npz") == {"0": [0.0, 2.0, 4.0], "1": [1.0, 3.0, 5.0]}
    with pytest.raises(ValueError, match="must be"):
        read_columns(tmp_path / "r.txt")


def test_profile_keys_and_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(0, 1, 3000)
    lines = ["v,kind"] + [f"{v},{'ab'[i % 2]}" for i, v in enumerate(values)]
    (tmp_path / "ref.csv").write_text("\n".join(lines) + "\n")
    profile = build_profile(tmp_path / "ref.csv")
    numeric, categorical = profile.features
    assert profile.rows == 3000 and numeric.kind == "numeric" and categorical.kind == "categorical"
    assert len(numeric.values) == MAX_VALUES and len(numeric.quantiles) == 9
    assert numeric.minimum == values.min() and numeric.maximum == values.max()
    assert categorical.frequencies == {"a": 0.5, "b": 0.5} and categorical.null_rate == 0.0
    profile.save(tmp_path / PROFILE_FILE)
    again = Profile.from_document(
        __import__("orjson").loads((tmp_path / PROFILE_FILE).read_bytes())
    )
    assert again.document() == profile.document()
    with pytest.raises(ValueError, match="no column"):
        build_profile(tmp_path / "ref.csv", ["nope"])


def test_cached_profile_is_rebuilt_when_the_file_changes(tmp_path: Path) -> None:
    reference = tmp_path / "ref.csv"
    reference.write_text("x\n1\n2\n")
    first = load_or_build(reference)
    assert (tmp_path / PROFILE_FILE).is_file() and first.features[0].maximum == 2.0
    assert load_or_build(reference).document() == first.document()
    time.sleep(0.01)
    reference.write_text("x\n1\n2\n30\n")
    assert load_or_build(reference).features[0].maximum == 30.0
