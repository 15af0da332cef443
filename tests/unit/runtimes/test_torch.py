"""The torch runtime on networks built at test time: TorchScript, exported programs, pickled
modules (trust), signatures, datatypes, threads, and the client's mistakes as ValueError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from modelserve.errors import ModelLoadError
from modelserve.types import TensorSpec
from tests import torch_models
from tests.unit.runtimes.artifacts import make_ctx

X_DECL = [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]


def test_exported_program_tells_its_signature_and_batches(tmp_path: Path) -> None:
    from modelserve.runtimes.torch import TorchRuntime

    ctx = make_ctx(tmp_path / "mlp", parameters={"num_threads": 2})
    module = torch_models.save_exported(ctx.version_dir / "model.pt2")
    runtime = TorchRuntime.load(ctx)
    sig = runtime.signature()
    assert sig.inputs == (TensorSpec("x", "FP32", (-1, 4)),)
    assert sig.outputs == (TensorSpec("output", "FP32", (-1, 3)),)
    assert sig.batchable
    assert runtime.kind == "export"
    for n in (1, 5):
        x = torch_models.rows(n)
        out = runtime.predict({"x": x})["output"]
        assert out.dtype == np.float32 and out.shape == (n, 3)
        np.testing.assert_allclose(out, torch_models.reference(module, x), rtol=1e-6)
    assert torch.get_num_threads() == 2


def test_torchscript_needs_declared_inputs_and_finds_its_outputs(tmp_path: Path) -> None:
    from modelserve.runtimes.torch import TorchRuntime

    bare = make_ctx(tmp_path / "bare")
    torch_models.save_torchscript(bare.version_dir / "model.pt")
    with pytest.raises(ModelLoadError, match=r"declare 'inputs'.*|forward\(x\)"):
        TorchRuntime.load(bare)

    ctx = make_ctx(
        tmp_path / "ts",
        inputs=X_DECL,
        outputs=[{"name": "logits", "datatype": "FP32", "shape": [-1, 3]}],
    )
    module = torch_models.save_torchscript(ctx.version_dir / "model.pt")
    runtime = TorchRuntime.load(ctx)
    assert runtime.kind == "script"
    sig = runtime.signature()
    assert sig.inputs == (TensorSpec("x", "FP32", (-1, 4)),)
    assert sig.outputs == (TensorSpec("logits", "FP32", (-1, 3)),)
    x = torch_models.rows(3)
    readonly = np.frombuffer(x.tobytes(), dtype=np.float32).reshape(3, 4)  # as decoded
    out = runtime.predict({"x": readonly})["logits"]
    np.testing.assert_allclose(out, torch_models.reference(module, x), rtol=1e-6)


def test_inputs_by_position_and_dict_outputs_with_their_datatypes(tmp_path: Path) -> None:
    from modelserve.runtimes.torch import TorchRuntime

    ctx = make_ctx(
        tmp_path / "two",
        inputs=[
            {"name": "INPUT__0", "datatype": "FP32", "shape": [-1, 4]},
            {"name": "INPUT__1", "datatype": "FP32", "shape": [-1, 3]},
        ],
    )
    module = torch_models.TwoHeads().eval()
    torch.jit.save(torch.jit.script(module), str(ctx.version_dir / "model.pt"))
    runtime = TorchRuntime.load(ctx)
    assert runtime.signature().outputs == (
        TensorSpec("scores", "FP32", (-1, 3)),
        TensorSpec("best", "INT64", (-1,)),
    )
    x, bias = torch_models.rows(4), np.full((4, 3), 0.5, dtype=np.float32)
    out = runtime.predict({"INPUT__0": x, "INPUT__1": bias})
    with torch.inference_mode():
        want = module(torch.from_numpy(x), torch.from_numpy(bias))
    np.testing.assert_allclose(out["scores"], want["scores"].numpy(), rtol=1e-6)
    assert out["best"].dtype == np.int64
    np.testing.assert_array_equal(out["best"], want["best"].numpy())


def test_pickled_module_only_with_trust(tmp_path: Path) -> None:
    from modelserve.runtimes.torch import TorchRuntime

    refused = make_ctx(tmp_path / "refused", inputs=X_DECL)
    torch_models.save_pickled(refused.version_dir / "model.pt")
    with pytest.raises(ModelLoadError, match=r"refusing to load model\.pt.*trust: true"):
        TorchRuntime.load(refused)

    trusted = make_ctx(tmp_path / "trusted", inputs=X_DECL, trust=True)
    module = torch_models.save_pickled(trusted.version_dir / "model.pth")
    runtime = TorchRuntime.load(trusted)
    assert runtime.kind == "pickle"
    x = torch_models.rows(2)
    np.testing.assert_allclose(
        runtime.predict({"x": x})["output"], torch_models.reference(module, x), rtol=1e-6
    )

    weights = make_ctx(tmp_path / "weights", inputs=X_DECL, trust=True)
    torch.save(torch_models.TinyMLP().state_dict(), weights.version_dir / "model.pt")
    with pytest.raises(ModelLoadError, match=r"state_dict.*python runtime"):
        TorchRuntime.load(weights)


def test_wrong_shapes_are_the_clients_mistake(tmp_path: Path) -> None:
    from modelserve.runtimes.torch import TorchRuntime

    probed = make_ctx(
        tmp_path / "probed", inputs=[{"name": "x", "datatype": "FP32", "shape": [-1, -1]}]
    )
    torch_models.save_torchscript(probed.version_dir / "model.pt")
    with pytest.raises(ModelLoadError, match=r"call on zeros.*mat1 and mat2 shapes"):
        TorchRuntime.load(probed)  # the outputs cannot be found on a [1, 1] input

    ctx = make_ctx(
        tmp_path / "bad",
        inputs=[{"name": "x", "datatype": "FP32", "shape": [-1, -1]}],
        outputs=[{"name": "y", "datatype": "FP32", "shape": [-1, 3]}],
    )
    torch_models.save_torchscript(ctx.version_dir / "model.pt")
    runtime = TorchRuntime.load(ctx)
    assert runtime.signature().outputs == (TensorSpec("y", "FP32", (-1, 3)),)
    with pytest.raises(ValueError, match=r"^mat1 and mat2 shapes cannot be multiplied"):
        runtime.predict({"x": np.zeros((2, 5), dtype=np.float32)})

    exported = make_ctx(tmp_path / "exported")
    torch_models.save_exported(exported.version_dir / "model.pt2")
    program = TorchRuntime.load(exported)
    with pytest.raises(ValueError, match=r"Guard failed: x.size\(\)\[1\] == 4"):
        program.predict({"x": np.zeros((2, 5), dtype=np.float32)})


def test_corrupt_and_unknown_files_are_load_errors(tmp_path: Path) -> None:
    from modelserve.runtimes.torch import TorchRuntime

    ctx = make_ctx(tmp_path / "junk", inputs=X_DECL)
    (ctx.version_dir / "model.pt2").write_bytes(b"not a zip")
    with pytest.raises(ModelLoadError, match=r"torch cannot load model\.pt2"):
        TorchRuntime.load(ctx)


def test_suffixes_name_the_torch_runtime(tmp_path: Path) -> None:
    from modelserve.runtimes.registry import infer_runtime_name, runtime_for_file

    assert runtime_for_file("net.pt2") == "torch"
    assert runtime_for_file("net.pt") == "torch"
    assert runtime_for_file("net.pth") == "torch"
    (tmp_path / "model.pt2").write_bytes(b"")
    assert infer_runtime_name(tmp_path) == "torch"
