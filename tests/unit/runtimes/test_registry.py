"""The runtime registry: runtimes from installed entry points, imported only when asked for."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from modelserve.errors import ModelLoadError


def test_runtimes_from_installed_entry_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package declaring ``[project.entry-points."modelserve.runtimes"]`` adds a runtime by
    name; nothing of it is imported until a model asks for it; a taken name is an error."""

    from modelserve.runtimes.registry import RuntimeRegistry, installed_runtimes

    dist = tmp_path / "modelserve_plugin_demo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: modelserve-plugin-demo\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(
        "[modelserve.runtimes]\ndemo = plugin_demo_runtime:Demo\n"
    )
    (tmp_path / "plugin_demo_runtime.py").write_text(
        "from modelserve.runtimes.python import PythonRuntime\n\n"
        "class Demo(PythonRuntime):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "demo" in {point.name for point in installed_runtimes()}
    registry = RuntimeRegistry()
    assert "demo" in registry.names()
    assert "plugin_demo_runtime" not in sys.modules
    assert registry.resolve("demo").__name__ == "Demo"
    (dist / "entry_points.txt").write_text(
        "[modelserve.runtimes]\nonnx = plugin_demo_runtime:Demo\n"
    )
    with pytest.raises(ModelLoadError, match="already registered"):
        RuntimeRegistry()
