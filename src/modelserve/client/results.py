"""What the client returns: plain data with the call's identity attached.

``predict`` answers in the kind it was given (inputs.py decides which), each carrying ``id``
(the request id the server answered under: give it to ``send_labels``), ``model_name``,
``model_version`` (which version answered) and ``outputs`` (every output as the numpy array the
server answered, whatever the kind):

- ``Outputs``: a dict of output name to numpy array (a dict in, or an array in for a model
  with several outputs);
- ``PredictedArray``: a numpy array (an array in, one output out); ``np.asarray`` gives a
  plain one;
- ``Rows``: a list of dicts, one per input row (a list of rows or records in);
- ``PredictionFrame`` (frames.py, with pandas): a DataFrame, one row per input row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Outputs", "PredictedArray", "RepositoryModel", "Rows"]


@dataclass(frozen=True, slots=True)
class RepositoryModel:
    """One row of the repository index (``client.models()``)."""

    name: str
    version: str
    state: str
    """READY, LOADING, UNLOADING or UNAVAILABLE (or what another V2 server reports)."""
    reason: str = ""


class Outputs(dict[str, npt.NDArray[Any]]):
    """Output name -> numpy array, in the order the server answered."""

    id: str
    model_name: str
    model_version: str
    outputs: dict[str, npt.NDArray[Any]]

    def __init__(
        self,
        arrays: dict[str, npt.NDArray[Any]],
        *,
        id: str,
        model_name: str,
        model_version: str,
        outputs: dict[str, npt.NDArray[Any]] | None = None,
    ) -> None:
        super().__init__(arrays)
        self.id = id
        self.model_name = model_name
        self.model_version = model_version
        self.outputs = outputs if outputs is not None else dict(arrays)

    def __repr__(self) -> str:
        return (
            f"Outputs({dict.__repr__(self)}, id={self.id!r}, "
            f"model_name={self.model_name!r}, model_version={self.model_version!r})"
        )


class PredictedArray(np.ndarray[Any, Any]):
    """A numpy array with the call's ``id``, ``model_name`` and ``model_version``."""

    id: str | None
    model_name: str
    model_version: str
    outputs: dict[str, npt.NDArray[Any]]

    @classmethod
    def wrap(
        cls,
        array: npt.NDArray[Any],
        *,
        id: str,
        model_name: str,
        model_version: str,
        outputs: dict[str, npt.NDArray[Any]],
    ) -> PredictedArray:
        out = np.asarray(array).view(cls)
        out.id = id
        out.model_name = model_name
        out.model_version = model_version
        out.outputs = outputs
        return out

    def __array_finalize__(self, obj: Any) -> None:
        self.id = getattr(obj, "id", None)
        self.model_name = getattr(obj, "model_name", "")
        self.model_version = getattr(obj, "model_version", "")
        self.outputs = getattr(obj, "outputs", {})


class Rows(list[dict[str, Any]]):
    """One dict per input row: output name -> value (a number, a string, or a list)."""

    id: str
    model_name: str
    model_version: str
    outputs: dict[str, npt.NDArray[Any]]

    def __init__(
        self,
        rows: list[dict[str, Any]],
        *,
        id: str,
        model_name: str,
        model_version: str,
        outputs: dict[str, npt.NDArray[Any]],
    ) -> None:
        super().__init__(rows)
        self.id = id
        self.model_name = model_name
        self.model_version = model_version
        self.outputs = outputs
