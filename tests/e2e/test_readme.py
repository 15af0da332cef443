"""The README's quickstart snippets run as written against a real server."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from tests.conftest import ROOT, RunningServer

README = (ROOT / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_curl(server: RunningServer) -> None:
    command = next(b for b in blocks("sh") if b.startswith("curl"))
    command = command.replace("localhost:8000", server.url).replace("\\\n", " ")
    result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["model_name"] == "iris_onnx"
    assert {o["name"] for o in answer["outputs"]} == {"label", "probabilities"}


def test_readme_python(server: RunningServer, capsys: pytest.CaptureFixture[str]) -> None:
    (code,) = blocks("python")
    exec(compile(code.replace("127.0.0.1:8000", server.url), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert re.match(r"\[\d \d\] \[\[", printed), printed
