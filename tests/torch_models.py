"""Tiny PyTorch networks built at test time, saved as the torch runtime loads them: TorchScript
(``.pt``), ``torch.export`` programs (``.pt2``), pickled modules, and safetensors weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

WIDTH = 4
CLASSES = 3


class TinyMLP(torch.nn.Module):
    """4 features -> 8 -> 3 logits, fixed seed."""

    def __init__(self, seed: int = 0, width: int = WIDTH, hidden: int = 8) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.hidden = torch.nn.Linear(width, hidden)
        self.out = torch.nn.Linear(hidden, CLASSES)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(x)))


class TwoHeads(torch.nn.Module):
    """Two inputs, a dict of two outputs of other dtypes: ``scores`` (FP32) and ``best``
    (INT64)."""

    def __init__(self) -> None:
        super().__init__()
        self.mlp = TinyMLP(seed=1)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> dict[str, torch.Tensor]:
        scores = self.mlp(x) + bias
        return {"scores": scores, "best": torch.argmax(scores, dim=1)}


def rows(n: int = 6, width: int = WIDTH, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, width)).astype(np.float32)


def reference(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return module(torch.from_numpy(x)).numpy()


def save_torchscript(path: Path, module: torch.nn.Module | None = None) -> torch.nn.Module:
    module = (module or TinyMLP()).eval()
    torch.jit.save(torch.jit.script(module), str(path))
    return module


def save_exported(path: Path, module: torch.nn.Module | None = None) -> torch.nn.Module:
    """The program with a dynamic batch dimension."""
    module = (module or TinyMLP()).eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(
        module, (torch.from_numpy(rows(2)),), dynamic_shapes={"x": {0: batch}}
    )
    torch.export.save(program, path)
    return module


def save_pickled(path: Path, module: torch.nn.Module | None = None) -> torch.nn.Module:
    module = (module or TinyMLP()).eval()
    torch.save(module, path)
    return module
