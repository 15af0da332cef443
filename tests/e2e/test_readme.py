"""The README's quickstart snippets run as written against a real server."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, RunningServer

README = (ROOT / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_readme_curl(server: RunningServer) -> None:
    command = next(b for b in blocks("sh") if b.startswith("curl"))
    command = command.replace("localhost:8000", server.url).replace("\\\n", " ")
    result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["model_name"] == "iris_onnx"
    assert {o["name"] for o in answer["outputs"]} == {"label", "probabilities"}


def test_readme_image_curl(server: RunningServer, part_image: Path) -> None:
    """The detection example's file post, run from the checkout as a reader would (the image
    `make run` builds in examples/images is built for the tests in a temporary folder)."""
    command = next(b for b in blocks("sh") if "--data-binary" in b)
    assert "@examples/images/part.jpg " in command, command
    command = command.replace("@examples/images/part.jpg ", f"@{shlex.quote(str(part_image))} ")
    command = command.replace("localhost:8000", server.url)
    result = subprocess.run(
        command, shell=True, capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["model_name"] == "detector_pipeline"
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert set(outputs) == {"boxes", "scores", "classes", "labels", "count"}
    assert outputs["count"]["data"][0] >= 1
    assert set(outputs["labels"]["data"]) <= {"circle", "square", "triangle"}


def test_readme_predict_command(server: RunningServer) -> None:
    """The `modelserve predict` line, with the script `make run` installs (the venv's)."""
    (command,) = [b for b in blocks("sh") if "modelserve predict" in b]
    script = Path(sys.executable).with_name("modelserve")
    assert command.count(".venv/bin/modelserve") == 1 and script.exists()
    command = command.replace(".venv/bin/modelserve", str(script))
    env = {**os.environ, "MODELSERVE_URL": server.url}
    result = subprocess.run(
        command, shell=True, capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["label", "probabilities[0]", "probabilities[1]", "probabilities[2]"]
    assert len(rows) == 2 and all(re.match(r"\d +0\.\d+", row) for row in rows), rows
    assert "iris_onnx version 1, request id" in result.stderr


def test_readme_python(server: RunningServer, capsys: pytest.CaptureFixture[str]) -> None:
    ours, triton = blocks("python")
    exec(compile(ours.replace("127.0.0.1:8000", server.url), "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert re.match(r"\[\d \d\] \(2, 3\) [0-9a-f]{32}$", printed[0]), printed
    header = ["label", "probabilities[0]", "probabilities[1]", "probabilities[2]"]
    assert printed[1].split() == header and len(printed) == 4, printed
    exec(compile(triton.replace("127.0.0.1:8000", server.url), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert re.match(r"\[\d \d\] \[\[", printed), printed


def _requirements(extra: str, seen: set[str] | None = None) -> set[str]:
    """Distributions ``modelserve[extra]`` installs directly or through its other extras."""
    import tomllib

    from packaging.requirements import Requirement

    seen = seen if seen is not None else set()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names: set[str] = {Requirement(r).name.lower() for r in project["dependencies"]}
    for line in project["optional-dependencies"][extra]:
        requirement = Requirement(line)
        if requirement.name == "modelserve":
            for inner in requirement.extras - seen:
                seen.add(inner)
                names |= _requirements(inner, seen)
        else:
            names.add(requirement.name.lower())
    return names


def test_readme_python_needs_only_what_make_run_installs() -> None:
    """`make run` installs modelserve[examples]; the README's Python snippet imports nothing
    else, so it runs right after `make run` with the interpreter the README names."""
    from importlib.metadata import packages_distributions

    installed = _requirements("examples")
    distributions = packages_distributions()
    for code in blocks("python"):
        for module in re.findall(r"^(?:import|from) (\w+)", code, flags=re.M):
            if module == "modelserve":
                continue
            owners = {d.lower() for d in distributions.get(module, [])}
            assert owners & installed, f"{module} is not installed by `make run`"
    assert ".venv/bin/python" in README
