"""``accelerate: onnx`` end to end: a real server converts scikit-learn, XGBoost and LightGBM
versions at load, serves the graphs under the native signatures (tritonclient sees the same
tensors), keeps a version whose graph disagrees on its own rows native (the index says why), and
leaves alone what it cannot convert."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import skops.io as sio
import tritonclient.http as triton
import yaml

from modelserve.runtimes.base import CACHE_DIR
from tests.conftest import RunningServer, Servers
from tests.harness import example_builder, write_python_model

build = example_builder()

ECHO = """
class Echo:
    def predict(self, inputs):
        return {"OUT": inputs["IN"]}
"""


def write_model(repo, name: str, filename: str, builder, **config: object) -> None:  # type: ignore[no-untyped-def]
    version_dir = repo / name / "1"
    version_dir.mkdir(parents=True)
    builder(version_dir / filename)
    (repo / name / "model.yaml").write_text(yaml.safe_dump({"max_batch_size": 64, **config}))


@pytest.fixture(scope="module")
def accelerated(tmp_path_factory: pytest.TempPathFactory, serve_module: Servers) -> RunningServer:
    """--accelerate onnx for the server; one model opts out, one's own rows (its warmup
    sample) show that its float32 graph loses precision."""
    from sklearn.linear_model import LinearRegression

    repo = tmp_path_factory.mktemp("accelerate")
    write_model(repo, "iris", "model.skops", build.build_iris_sklearn)
    write_model(repo, "iris_native", "model.skops", build.build_iris_sklearn, accelerate="none")
    write_model(repo, "booster", "model.ubj", build.build_iris_xgboost)
    write_model(repo, "lgb", "model.lgb.txt", build.build_iris_lightgbm, accelerate="onnx")
    rng = np.random.default_rng(0)
    x = 1e7 + rng.standard_normal((50, 3))

    def precise(path):  # type: ignore[no-untyped-def]
        sio.dump(LinearRegression().fit(x, x @ np.array([1.0, -1.0, 0.0])), path)

    write_model(repo, "precise", "model.skops", precise, warmup={"sample_file": "rows.npz"})
    np.savez(repo / "precise" / "rows.npz", input=x)
    write_python_model(
        repo,
        "echo",
        ECHO,
        {
            "max_batch_size": 8,
            "inputs": [{"name": "IN", "datatype": "FP32", "shape": [-1, -1]}],
            "outputs": [{"name": "OUT", "datatype": "FP32", "shape": [-1, -1]}],
        },
        entrypoint="Echo",
    )
    return serve_module(repo, accelerate="onnx")


def index(server: RunningServer) -> dict[str, dict[str, str]]:
    rows = httpx.post(f"{server.http}/v2/repository/index").json()
    return {r["name"]: r for r in rows}


def test_sklearn_through_onnx_answers_as_the_native_model(accelerated: RunningServer) -> None:
    x = build.classification_data()[0][:64]
    client = triton.InferenceServerClient(accelerated.url)
    answers = {}
    for name in ("iris", "iris_native"):
        tensor = triton.InferInput("input", list(x.shape), "FP64")
        tensor.set_data_from_numpy(x)
        result = client.infer(name, [tensor])
        answers[name] = (result.as_numpy("label"), result.as_numpy("probabilities"))
        assert result.get_output("probabilities")["datatype"] == "FP64"
    np.testing.assert_array_equal(answers["iris"][0], answers["iris_native"][0])
    np.testing.assert_allclose(answers["iris"][1], answers["iris_native"][1], atol=1e-4)
    assert client.get_model_metadata("iris")["platform"] == "onnxruntime_onnx"
    assert client.get_model_metadata("iris_native")["platform"] == "sklearn"
    rows = index(accelerated)
    assert rows["iris"]["state"] == "READY" and rows["iris"]["reason"] == ""


def test_boosters_are_served_through_their_graphs(accelerated: RunningServer) -> None:
    client = triton.InferenceServerClient(accelerated.url)
    for name in ("booster", "lgb"):
        assert client.get_model_metadata(name)["platform"] == "onnxruntime_onnx", name
    import lightgbm

    x = build.regression_data()[0][:64]
    tensor = triton.InferInput("input", list(x.shape), "FP64")
    tensor.set_data_from_numpy(x)
    got = client.infer("lgb", [tensor]).as_numpy("prediction")
    repo = accelerated.settings.model_repository
    booster = lightgbm.Booster(model_file=str(repo / "lgb" / "1" / "model.lgb.txt"))
    np.testing.assert_allclose(got, booster.predict(x), rtol=1e-5, atol=1.5e-5)


def test_a_graph_that_disagrees_leaves_the_native_model_serving_and_says_why(
    accelerated: RunningServer,
) -> None:
    rows = index(accelerated)
    assert rows["precise"]["state"] == "READY"
    reason = rows["precise"]["reason"]
    assert reason.startswith("accelerate: onnx did not apply, the native model serves: ")
    assert "differ beyond rtol 1e-05/atol 1.5e-05" in reason
    meta = httpx.get(f"{accelerated.http}/v2/models/precise").json()
    assert meta["platform"] == "sklearn"
    # the python model is not a framework that converts: the server default leaves it alone
    assert rows["echo"]["state"] == "READY" and rows["echo"]["reason"] == ""


def test_the_conversion_is_cached_beside_the_artifact(accelerated: RunningServer) -> None:
    repo = accelerated.settings.model_repository
    cached = sorted(p.suffix for p in (repo / "iris" / "1" / CACHE_DIR).iterdir())
    assert cached == [".json", ".onnx"]
    assert not (repo / "iris_native" / "1" / CACHE_DIR).exists()
