"""``modelserve convert`` of PyTorch networks built at test time: an exported program through
torch.onnx's torch.export exporter and a TorchScript module through its TorchScript exporter, each
with a passing parity report and a graph that batches; a tolerance the graph cannot meet fails
the gate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import yaml

from modelserve.offline.convert import ConvertOptions, convert_artifact
from modelserve.runtimes.registry import RuntimeRegistry
from modelserve.serving.conversion import Tolerance
from tests import torch_models
from tests.harness import run_cli

CLI_TIMEOUT_S = 360.0
"""Importing torch and onnxscript, then torch.export's decompositions: a minute and more on the
shared machine under load."""


def test_exported_program_converts_with_a_passing_report(tmp_path: Path) -> None:
    artifact = tmp_path / "net.pt2"
    module = torch_models.save_exported(artifact)
    x = torch_models.rows(50)
    np.save(tmp_path / "sample.npy", x)
    out = tmp_path / "net.onnx"
    done = run_cli(
        ["convert", str(artifact), "--sample", str(tmp_path / "sample.npy"), "--out", str(out)],
        timeout=CLI_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "conversion_report.json").read_text())
    assert report["passed"] is True and report["reasons"] == []
    assert report["converter"] == "torch.onnx (torch.export exporter)"
    assert report["rows"] == 50 and report["mismatch_rate"] == 0.0
    assert {"torch", "onnxscript", "onnxruntime", "ai.onnx"} <= set(report["versions"])
    assert report["max_abs_err"] < 1e-5
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for n in (1, 7):  # the batch dimension stayed dynamic
        (got,) = session.run(None, {"x": x[:n]})
        np.testing.assert_allclose(got, torch_models.reference(module, x[:n]), atol=1e-5)


def test_torchscript_in_a_model_folder_converts(tmp_path: Path) -> None:
    model_dir = tmp_path / "repo" / "mlp"
    (model_dir / "1").mkdir(parents=True)
    module = torch_models.save_torchscript(model_dir / "1" / "model.pt")
    (model_dir / "model.yaml").write_text(
        yaml.safe_dump(
            {
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
                "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 3]}],
            }
        )
    )
    x = torch_models.rows(40)
    np.savez(tmp_path / "sample.npz", x=x)
    artifact = model_dir / "1" / "model.pt"  # its model.yaml declares the tensors
    options = ConvertOptions(artifact, tmp_path / "sample.npz", out=tmp_path / "mlp.onnx")
    result = convert_artifact(options, RuntimeRegistry())
    assert result.report.passed, result.report.reasons
    assert result.report.converter == "torch.onnx (TorchScript exporter)"
    session = ort.InferenceSession(str(tmp_path / "mlp.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits"]
    (got,) = session.run(None, {"x": x[:3]})
    np.testing.assert_allclose(got, torch_models.reference(module, x[:3]), atol=1e-5)

    # int8 weights move the logits far beyond the float tolerances: the gate fails, no graph
    quantized = convert_artifact(
        ConvertOptions(artifact, tmp_path / "sample.npz", out=tmp_path / "q.onnx", quantize="int8"),
        RuntimeRegistry(),
    )
    assert not quantized.report.passed and quantized.model_path is None
    assert "int8" in quantized.report.converter
    assert any("differ beyond" in reason for reason in quantized.report.reasons)
    loose = Tolerance(rtol=0.5, atol=0.5)
    accepted = convert_artifact(
        ConvertOptions(
            artifact, tmp_path / "sample.npz", out=tmp_path / "q.onnx", quantize="int8",
            tolerance=loose,
        ),
        RuntimeRegistry(),
    )  # fmt: skip
    assert accepted.report.passed and accepted.model_path == tmp_path / "q.onnx"
