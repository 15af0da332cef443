"""The python runtime: user modules isolated per model, the version folder first, load errors
with their cause, predict results checked, packages with relative imports."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from modelserve.errors import ModelLoadError
from modelserve.runtimes.python import PythonRuntime
from modelserve.types import TensorSpec
from tests.harness import ROOT, write_python_model
from tests.unit.runtimes.artifacts import folder_ctx, make_ctx

PLUS = """
import numpy as np
from pathlib import Path

class Model:
    inputs = [{"name": "X", "datatype": "FP32", "shape": [-1, 2]}]
    outputs = [{"name": "Y", "datatype": "FP32", "shape": [-1, 2]}]

    def load(self, version_dir, parameters):
        self.offset = float(parameters.get("offset", 0)) + DELTA
        Path(version_dir, "loaded-here").touch()

    def predict(self, inputs):
        return {"Y": inputs["X"] + self.offset}
"""


def plus(delta: int) -> str:
    return PLUS.replace("DELTA", str(delta))


def test_python_models_with_the_same_module_name_do_not_collide(tmp_path: Path) -> None:
    runtimes = []
    for name, delta in (("plus_one", 1), ("plus_ten", 10)):
        write_python_model(tmp_path, name, plus(delta), {"parameters": {"offset": 0.5}})
        runtimes.append(PythonRuntime.load(folder_ctx(tmp_path / name)))
    x = np.zeros((3, 2), dtype=np.float32)
    np.testing.assert_allclose(runtimes[0].predict({"X": x})["Y"], x + 1.5)
    np.testing.assert_allclose(runtimes[1].predict({"X": x})["Y"], x + 10.5)
    assert (tmp_path / "plus_one" / "1" / "loaded-here").exists(), "load got the version folder"

    sig = runtimes[0].signature()
    assert sig.inputs == (TensorSpec("X", "FP32", (-1, 2)),)
    assert sig.outputs == (TensorSpec("Y", "FP32", (-1, 2)),)
    assert sig.batchable
    assert "model" not in sys.modules or not hasattr(sys.modules["model"], "PLUS")
    user_modules = [n for n in sys.modules if n.startswith("modelserve_user.plus_")]
    assert len(user_modules) == 2
    for runtime in runtimes:
        runtime.unload()
    assert not [n for n in sys.modules if n.startswith("modelserve_user.plus_")]


def test_python_version_folder_wins_over_model_folder(tmp_path: Path) -> None:
    write_python_model(tmp_path, "shadow", plus(1), version_sources={1: plus(100)})
    out = PythonRuntime.load(folder_ctx(tmp_path / "shadow")).predict(
        {"X": np.zeros((1, 2), dtype=np.float32)}
    )
    np.testing.assert_allclose(out["Y"], [[100, 100]])


def test_python_import_error_is_a_load_error(tmp_path: Path) -> None:
    write_python_model(tmp_path, "broken", "raise RuntimeError('no GPU here')\n")
    with pytest.raises(ModelLoadError, match="RuntimeError: no GPU here"):
        PythonRuntime.load(folder_ctx(tmp_path / "broken"))
    assert not [n for n in sys.modules if n.startswith("modelserve_user.broken")]

    failing_load = """
    class Model:
        def load(self, version_dir, parameters):
            raise OSError("weights missing")

        def predict(self, inputs):
            return inputs
    """
    write_python_model(tmp_path, "failing_load", failing_load)
    with pytest.raises(ModelLoadError, match="weights missing"):
        PythonRuntime.load(folder_ctx(tmp_path / "failing_load"))


def test_python_entrypoint_problems(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="entrypoint"):
        PythonRuntime.load(make_ctx(tmp_path / "none"))
    with pytest.raises(ModelLoadError, match=r"model\.py"):
        PythonRuntime.load(make_ctx(tmp_path / "missing", entrypoint="model:Model"))
    write_python_model(tmp_path, "wrong_class", plus(1), entrypoint="Nope")
    with pytest.raises(ModelLoadError, match="no class Nope"):
        PythonRuntime.load(folder_ctx(tmp_path / "wrong_class"))


def test_python_predict_result_is_checked(tmp_path: Path) -> None:
    source = """
    class Model:
        def predict(self, inputs):
            return inputs["mode"]
    """
    write_python_model(tmp_path, "results", source)
    runtime = PythonRuntime.load(folder_ctx(tmp_path / "results"))
    assert runtime.signature().inputs == () and not runtime.signature().batchable
    out = runtime.predict({"mode": {"A": [1, 2, 3]}})  # type: ignore[dict-item]
    np.testing.assert_array_equal(out["A"], np.array([1, 2, 3]))
    with pytest.raises(TypeError, match="dict"):
        runtime.predict({"mode": [1, 2]})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="'A'"):
        runtime.predict({"mode": {"A": object()}})  # type: ignore[dict-item]


def test_python_package_entrypoint_with_relative_import(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path / "pkg", entrypoint="mypkg.core:Model")
    package = ctx.model_dir / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text("def double(x):\n    return x * 2\n")
    (package / "core.py").write_text(
        "from .helpers import double\n\n"
        "class Model:\n    def predict(self, inputs):\n        return {'Y': double(inputs['X'])}\n"
    )
    out = PythonRuntime.load(ctx).predict({"X": np.arange(3)})
    np.testing.assert_array_equal(out["Y"], [0, 2, 4])
    assert "mypkg" not in sys.modules


def test_example_python_add_model() -> None:
    runtime = PythonRuntime.load(folder_ctx(ROOT / "examples" / "models" / "python_add"))
    a = np.arange(32, dtype=np.float32).reshape(2, 16)
    b = np.ones((2, 16), dtype=np.float32)
    out = runtime.predict({"INPUT0": a, "INPUT1": b})
    np.testing.assert_array_equal(out["OUTPUT0"], a + b)
    np.testing.assert_array_equal(out["OUTPUT1"], a - b)
    runtime.unload()


def test_forgetting_modules_while_another_thread_imports() -> None:
    """Unloading a python model forgets its modules while other threads import (a loader
    thread, a request): a copy of sys.modules' keys is taken in one step, never iterated live
    ('dictionary changed size during iteration' in a server's teardown)."""
    import sys
    import threading

    from modelserve.runtimes.python import _forget_modules

    stop = threading.Event()

    def churn() -> None:
        n = 0
        while not stop.is_set():
            sys.modules[f"_modelserve_churn_{n % 50}"] = sys  # type: ignore[assignment]
            sys.modules.pop(f"_modelserve_churn_{(n + 25) % 50}", None)
            n += 1

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often: many interleavings in a short test
    thread = threading.Thread(target=churn)
    thread.start()
    try:
        for _ in range(500):
            sys.modules["_modelserve_forget_me.part"] = sys  # type: ignore[assignment]
            _forget_modules("_modelserve_forget_me")
            assert "_modelserve_forget_me.part" not in sys.modules
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
        for n in range(50):
            sys.modules.pop(f"_modelserve_churn_{n}", None)
