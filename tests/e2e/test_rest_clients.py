"""Every example model through tritonclient.http (JSON and binary) and raw httpx."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient

from tests.conftest import ALL_DATATYPES, RunningServer

# (model, {input: (datatype, shape)}, expected outputs)
EXAMPLES: dict[str, tuple[dict[str, tuple[str, tuple[int, ...]]], list[str]]] = {
    "iris_onnx": ({"input": ("FP32", (3, 4))}, ["label", "probabilities"]),
    "mlp_onnx": ({"input": ("FP32", (2, 256))}, ["output"]),
    "iris_sklearn": ({"input": ("FP64", (3, 4))}, ["label", "probabilities"]),
    "iris_xgboost": ({"input": ("FP32", (3, 4))}, ["prediction"]),
    "iris_lightgbm": ({"input": ("FP64", (3, 4))}, ["prediction"]),
    "python_add": (
        {"INPUT0": ("FP32", (2, 16)), "INPUT1": ("FP32", (2, 16))},
        ["OUTPUT0", "OUTPUT1"],
    ),
}


def _inputs(spec: dict[str, tuple[str, tuple[int, ...]]], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        name: rng.normal(size=shape).astype(np.float32 if dt == "FP32" else np.float64)
        for name, (dt, shape) in spec.items()
    }


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("model", sorted(EXAMPLES))
def test_tritonclient_http_infers_every_example(
    server: RunningServer, model: str, binary: bool
) -> None:
    spec, outputs = EXAMPLES[model]
    arrays = _inputs(spec)
    client = httpclient.InferenceServerClient(server.url)
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(model)
        infer_inputs = []
        for name, (datatype, shape) in spec.items():
            tensor = httpclient.InferInput(name, list(shape), datatype)
            tensor.set_data_from_numpy(arrays[name], binary_data=binary)
            infer_inputs.append(tensor)
        requested = [httpclient.InferRequestedOutput(o, binary_data=binary) for o in outputs]
        result = client.infer(model, infer_inputs, outputs=requested, request_id="req-7")
        response = result.get_response()
        assert response["id"] == "req-7"
        assert response["model_name"] == model
        assert [o["name"] for o in response["outputs"]] == outputs
        batch = next(iter(spec.values()))[1][0]
        for name in outputs:
            value = result.as_numpy(name)
            assert value is not None and value.shape[0] == batch
        if model == "python_add":
            np.testing.assert_allclose(
                result.as_numpy("OUTPUT0"), arrays["INPUT0"] + arrays["INPUT1"], rtol=1e-6
            )
            np.testing.assert_allclose(
                result.as_numpy("OUTPUT1"), arrays["INPUT0"] - arrays["INPUT1"], rtol=1e-6
            )
        # tritonclient's defaults: binary inputs, no outputs named -> binary_data_output
        default = client.infer(model, infer_inputs)
        for name in outputs:
            np.testing.assert_allclose(default.as_numpy(name), result.as_numpy(name), rtol=1e-6)
    finally:
        client.close()


def test_onnx_classifier_matches_sklearn_probabilities(server: RunningServer) -> None:
    """The ONNX and skops versions of the same fitted regression agree through the server."""
    x = _inputs({"input": ("FP64", (5, 4))}, seed=3)["input"]
    with httpx.Client(base_url=f"http://{server.url}") as client:
        onnx = client.post(
            "/v2/models/iris_onnx/infer",
            json={
                "inputs": [
                    {
                        "name": "input",
                        "datatype": "FP32",
                        "shape": [5, 4],
                        "data": x.astype(np.float32).ravel().tolist(),
                    }
                ]
            },
        ).json()
        skl = client.post(
            "/v2/models/iris_sklearn/infer",
            json={
                "inputs": [
                    {"name": "input", "datatype": "FP64", "shape": [5, 4], "data": x.tolist()}
                ]
            },
        ).json()
    proba = {o["name"]: o for o in onnx["outputs"]}["probabilities"]["data"]
    proba_skl = {o["name"]: o for o in skl["outputs"]}["probabilities"]["data"]
    np.testing.assert_allclose(proba, proba_skl, atol=1e-5)
    labels = {o["name"]: o for o in skl["outputs"]}["label"]["data"]
    assert labels == {o["name"]: o for o in onnx["outputs"]}["label"]["data"]


def test_sklearn_takes_fp32_and_answers_only_what_is_asked(server: RunningServer) -> None:
    """An FP64 scikit-learn model accepts FP32 features (cast exactly) over both transports;
    asking for ``label`` alone answers just that; INT64 is still refused, naming what is
    accepted."""
    import tritonclient.grpc as grpcclient

    x = _inputs({"input": ("FP64", (5, 4))}, seed=4)["input"].astype(np.float32)
    expected = x.astype(np.float64)
    reference = httpx.post(
        f"http://{server.url}/v2/models/iris_sklearn/infer",
        json={
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP64",
                    "shape": [5, 4],
                    "data": expected.ravel().tolist(),
                }
            ]
        },
    ).json()
    want = {o["name"]: o["data"] for o in reference["outputs"]}
    for module, url in ((httpclient, server.url), (grpcclient, server.grpc_url)):
        client = module.InferenceServerClient(url)
        try:
            tensor = module.InferInput("input", [5, 4], "FP32")
            tensor.set_data_from_numpy(x)
            result = client.infer("iris_sklearn", [tensor])
            np.testing.assert_allclose(
                result.as_numpy("probabilities").ravel(), want["probabilities"]
            )
            only = client.infer(
                "iris_sklearn", [tensor], outputs=[module.InferRequestedOutput("label")]
            )
            assert only.as_numpy("probabilities") is None
            assert only.as_numpy("label").tolist() == want["label"]
            wrong = module.InferInput("input", [5, 4], "INT64")
            wrong.set_data_from_numpy(x.astype(np.int64))
            with pytest.raises(Exception, match=r"model expects FP64 \(or FP16, FP32"):
                client.infer("iris_sklearn", [wrong])
        finally:
            client.close()


def _roundtrip_values(datatype: str) -> np.ndarray:
    if datatype == "BOOL":
        return np.array([[True, False, True]])
    if datatype == "BYTES":
        return np.array([["plain", "ünïcode ✓", ""]], dtype=object)
    dtype = np.dtype(httpclient.triton_to_np_dtype(datatype))
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.array([[info.min, 0, info.max]], dtype=dtype)
    return np.array([[-1.5, 0.0, 65504.0 if dtype == np.float16 else 3.25e38]], dtype=dtype)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype", ALL_DATATYPES)
def test_every_datatype_round_trips(server: RunningServer, datatype: str, binary: bool) -> None:
    values = _roundtrip_values(datatype)
    client = httpclient.InferenceServerClient(server.url)
    try:
        tensor = httpclient.InferInput("IN", list(values.shape), datatype)
        tensor.set_data_from_numpy(values, binary_data=binary)
        result = client.infer(
            f"echo_{datatype.lower()}",
            [tensor],
            outputs=[httpclient.InferRequestedOutput("OUT", binary_data=binary)],
        )
        out = result.as_numpy("OUT")
        assert out is not None
        if datatype == "BYTES":
            got = [v.decode("utf-8") if isinstance(v, bytes) else v for v in out.ravel()]
            assert got == list(values.ravel())
        else:
            assert out.dtype == values.dtype
            np.testing.assert_array_equal(out, values)
        assert result.get_response()["outputs"][0]["datatype"] == datatype
    finally:
        client.close()


def test_raw_json_nested_and_flat_data(server: RunningServer) -> None:
    with httpx.Client(base_url=f"http://{server.url}") as client:
        rows = [[float(i + j) for j in range(16)] for i in range(2)]
        for data in (rows, [v for row in rows for v in row]):
            body = {
                "id": "abc",
                "inputs": [
                    {"name": "INPUT0", "datatype": "FP32", "shape": [2, 16], "data": data},
                    {"name": "INPUT1", "datatype": "FP32", "shape": [2, 16], "data": data},
                ],
                "outputs": [{"name": "OUTPUT1"}],
            }
            reply = client.post("/v2/models/python_add/infer", json=body)
            assert reply.status_code == 200, reply.text
            doc = reply.json()
            assert doc["id"] == "abc"
            assert [o["name"] for o in doc["outputs"]] == ["OUTPUT1"]
            assert doc["outputs"][0]["data"] == [0.0] * 32
            assert doc["outputs"][0]["shape"] == [2, 16]


def test_binary_output_only_for_requested_output(server: RunningServer) -> None:
    body = (
        b'{"inputs":[{"name":"IN","datatype":"INT32","shape":[1,2],"data":[5,6]}],'
        b'"parameters":{"binary_data_output":true},'
        b'"outputs":[{"name":"OUT","parameters":{"binary_data":false}}]}'
    )
    with httpx.Client(base_url=f"http://{server.url}") as client:
        reply = client.post("/v2/models/echo_int32/infer", content=body)
        assert reply.status_code == 200
        assert "inference-header-content-length" not in reply.headers
        assert reply.json()["outputs"][0]["data"] == [5, 6]
        body2 = (
            b'{"inputs":[{"name":"IN","datatype":"INT32","shape":[1,2],"data":[5,6]}],'
            b'"parameters":{"binary_data_output":true}}'
        )
        reply = client.post("/v2/models/echo_int32/infer", content=body2)
        length = int(reply.headers["inference-header-content-length"])
        header: dict[str, Any] = httpx.Response(200, content=reply.content[:length]).json()
        assert header["outputs"][0]["parameters"]["binary_data_size"] == 8
        assert np.frombuffer(reply.content[length:], dtype="<i4").tolist() == [5, 6]


def test_metadata_config_and_index(server: RunningServer) -> None:
    with httpx.Client(base_url=f"http://{server.url}") as client:
        meta = client.get("/v2").json()
        assert meta["name"] == "modelserve"
        assert "binary_tensor_data" in meta["extensions"]
        model = client.get("/v2/models/iris_onnx").json()
        assert model["versions"] == ["1"]
        assert model["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
        assert client.get("/v2/models/iris_onnx/versions/1").json() == model
        config = client.get("/v2/models/iris_onnx/config").json()
        assert config["max_batch_size"] == 64
        assert config["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": [4]}]
        assert client.get("/v2/models/iris_onnx/versions/1/ready").status_code == 200
        for body in (b"", b"{}", b'{"ready": true}'):
            index = client.post("/v2/repository/index", content=body)
            assert index.status_code == 200
            names = {row["name"] for row in index.json()}
            assert {"iris_onnx", "mlp_onnx", "python_add"} <= names
            assert all(row["state"] == "READY" for row in index.json())
