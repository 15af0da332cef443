"""What sinks write: the payload-log record and the V2 documents, with mode and redaction."""

from __future__ import annotations

import base64
import re

import numpy as np
import orjson

from modelserve.config.payload import PayloadLoggingConfig
from modelserve.errors import ErrorCode
from modelserve.monitoring.events import InferenceEvent
from modelserve.monitoring.records import (
    LogPolicy,
    record,
    record_bytes,
    request_document,
    response_document,
    rfc3339,
)
from modelserve.types import Tensor, as_object_array


def _event(**changes: object) -> InferenceEvent:
    data = np.arange(8, dtype=np.float32).reshape(2, 4)
    ssn = as_object_array([b"123-45", b"678-90"]).reshape(2, 1)
    probs = np.array([[0.25, 0.75], [1.0, 0.0]], dtype=np.float16)
    event = InferenceEvent(
        id="r1",
        model="iris",
        version="3",
        inputs=(Tensor("input", "FP32", (2, 4), data), Tensor("ssn", "BYTES", (2, 1), ssn)),
        outputs=(Tensor("probabilities", "FP16", (2, 2), probs),),
        parameters={"secret": "s", "priority": 1},
        status="success",
        code=None,
        error=None,
        arrived_ns=1_795_000_000_123_456_789,
        latency_ns=1_234_567,
        transport="grpc",
        headers={"x-user": "ada", "x-token": "t"},
    )
    for key, value in changes.items():
        setattr(event, key, value)
    return event


def _policy(**config: object) -> LogPolicy:
    return LogPolicy.from_config(PayloadLoggingConfig.model_validate(config))


def test_record_has_the_documented_fields() -> None:
    doc = orjson.loads(record_bytes(_event(), _policy(headers=["X-User"])))
    assert doc == {
        "id": "r1",
        "model": "iris",
        "version": "3",
        "time": "2026-11-18T11:06:40.123456Z",
        "status": "success",
        "latency_ms": 1.235,
        "transport": "grpc",
        "parameters": {"secret": "s", "priority": 1},
        "headers": {"x-user": "ada"},
        "inputs": [
            {"name": "input", "datatype": "FP32", "shape": [2, 4], "data": list(range(8))},
            {"name": "ssn", "datatype": "BYTES", "shape": [2, 1], "data": ["123-45", "678-90"]},
        ],
        "outputs": [
            {
                "name": "probabilities",
                "datatype": "FP16",
                "shape": [2, 2],
                "data": [0.25, 0.75, 1.0, 0.0],
            }
        ],
    }


def test_time_is_rfc3339_utc() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", rfc3339(0))
    assert rfc3339(0) == "1970-01-01T00:00:00.000000Z"


def test_redaction_leaves_out_tensors_parameters_and_headers() -> None:
    policy = _policy(
        redact=["inputs.ssn", "outputs.probabilities", "parameters.secret", "headers.x-token"],
        headers=["x-user", "x-token"],
    )
    doc = record(_event(), policy)
    assert [t["name"] for t in doc["inputs"]] == ["input"]
    assert doc["outputs"] == []
    assert doc["parameters"] == {"priority": 1}
    assert doc["headers"] == {"x-user": "ada"}
    text = record_bytes(_event(), policy)
    assert b"123-45" not in text and b"secret" not in text and b'"t"' not in text
    assert "ssn" not in str(request_document(_event(), policy))


def test_modes() -> None:
    request_only = record(_event(), _policy(mode="request"))
    response_only = record(_event(), _policy(mode="response"))
    assert "inputs" in request_only and "outputs" not in request_only
    assert "outputs" in response_only and "inputs" not in response_only


def test_failures_have_status_code_and_error_and_no_outputs() -> None:
    failed = _event(
        status="invalid_argument", code=ErrorCode.INVALID_ARGUMENT, error="bad", outputs=()
    )
    doc = record(failed, _policy())
    assert (doc["status"], doc["status_code"], doc["error"]) == ("invalid_argument", 400, "bad")
    assert "outputs" not in doc


def test_non_utf8_bytes_are_base64() -> None:
    raw = as_object_array([b"\xff\x00", b"ok"])
    event = _event(inputs=(Tensor("blob", "BYTES", (2,), raw),))
    [tensor] = request_document(event, _policy())["inputs"]
    assert tensor["parameters"] == {"content_encoding": "base64"}
    assert [base64.b64decode(x) for x in tensor["data"]] == [b"\xff\x00", b"ok"]


def test_non_contiguous_arrays_are_written_in_row_major_order() -> None:
    data = np.arange(6, dtype=np.int32).reshape(2, 3).T  # a transposed view
    event = _event(outputs=(Tensor("t", "INT32", (3, 2), data),))
    [tensor] = response_document(event, _policy())["outputs"]
    assert orjson.loads(orjson.dumps(tensor, option=orjson.OPT_SERIALIZE_NUMPY))["data"] == [
        0, 3, 1, 4, 2, 5,
    ]  # fmt: skip


def test_the_encoding_is_made_once_per_policy() -> None:
    event, policy = _event(), _policy()
    first = record_bytes(event, policy)
    assert record_bytes(event, policy) is first  # a second sink of the model reuses it
    other = record_bytes(event, _policy(mode="request"))
    assert other != first and event.encoded is not None and len(event.encoded) == 2
