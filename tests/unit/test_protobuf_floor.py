"""The generated gRPC code's protobuf floor (docs/grpc.md): the one pyproject.toml declares, and
one a current tritonclient accepts, so that both install together without pip walking tritonclient
back to an old release."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import requires, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

import modelserve.protocol

ROOT = Path(__file__).resolve().parents[2]
GENERATED = Path(modelserve.protocol.__file__).parent
CHECK = re.compile(
    r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+),"
)


def _gencode_versions() -> set[Version]:
    found = set()
    for path in sorted(GENERATED.glob("*_pb2.py")):
        match = CHECK.search(path.read_text())
        assert match is not None, f"{path.name}: no runtime version check"
        found.add(Version(".".join(match.groups())))
    return found


def _declared_protobuf() -> Requirement:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = [Requirement(r) for r in project["dependencies"] if r.startswith("protobuf")]
    assert len(found) == 1
    return found[0]


def test_the_declared_floor_is_the_generated_codes() -> None:
    (gencode,) = _gencode_versions()  # every file from the same protoc
    declared = _declared_protobuf().specifier
    floors = [Version(s.version) for s in declared if s.operator == ">="]
    assert floors == [gencode], f"pyproject.toml's protobuf floor should be {gencode}"


def test_a_current_tritonclient_accepts_the_generated_code() -> None:
    (gencode,) = _gencode_versions()
    wanted = [
        Requirement(r)
        for r in requires("tritonclient") or []
        if r.startswith("protobuf") and "grpc" in r
    ]
    assert wanted, "tritonclient's gRPC extra names no protobuf range"
    for requirement in wanted:
        assert requirement.specifier.contains(gencode), (
            f"tritonclient {version('tritonclient')} wants {requirement.specifier}; the generated "
            f"code needs protobuf>={gencode}"
        )
    # 2.73 is the release of the dev extras' resolution when the floor was chosen: an older one
    # means pip walked tritonclient back to fit a newer floor
    assert Version(version("tritonclient")) >= Version("2.73")
