"""Triton's system shared-memory extension with tritonclient's shared-memory calls
(register_system_shared_memory, InferInput/InferRequestedOutput.set_shared_memory), over REST
and gRPC: inputs read from and outputs written to POSIX shared memory; off by default; keys only
under the prefix, never through a link; bounds checked; errors name no key.

The regions are made with the standard library's POSIX shared memory (shm_open, as
tritonclient.utils.shared_memory does; that module needs pkg_resources, which current
setuptools no longer ships)."""

from __future__ import annotations

import os
import queue
import uuid
from collections.abc import Iterator
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.e2e.test_decoupled import COUNTDOWN
from tests.harness import Servers, write_python_model
from tests.triton_repo import write_triton_repo

BYTES = 16 * 4  # one row of simple's INT32 [16]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_triton_repo(tmp_path_factory.mktemp("shm"))


def create(key: str, size: int) -> shared_memory.SharedMemory:
    return shared_memory.SharedMemory(key[1:], create=True, size=size)


def contents(handle: shared_memory.SharedMemory, offset: int = 0) -> np.ndarray:
    return np.frombuffer(handle.buf, np.int32, 16, offset).reshape(1, 16).copy()


@pytest.fixture
def regions() -> Iterator[tuple[str, Any, str, Any]]:
    """An input region (two rows) and an output region (two rows), under the default prefix."""
    tag = uuid.uuid4().hex[:8]
    keys = (f"/modelserve_in_{tag}", f"/modelserve_out_{tag}")
    handles = [create(k, 2 * BYTES) for k in keys]
    yield keys[0], handles[0], keys[1], handles[1]
    for handle in handles:
        handle.close()
        handle.unlink()


def client_for(running: Any, module: Any) -> Any:
    return module.InferenceServerClient(running.url if module is httpclient else running.grpc_url)


@pytest.mark.parametrize("module", [httpclient, grpcclient])
def test_inputs_and_outputs_through_shared_memory(
    repo: Path, serve: Servers, regions: Any, module: Any
) -> None:
    in_key, in_handle, out_key, out_handle = regions
    running = serve(repo, shared_memory="system")
    client = client_for(running, module)
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 3, dtype=np.int32)
    in_handle.buf[: 2 * BYTES] = np.concatenate([a, b], axis=1).tobytes()
    client.register_system_shared_memory("in", in_key, 2 * BYTES)
    client.register_system_shared_memory("out", out_key, 2 * BYTES)
    inputs = [module.InferInput(f"INPUT{i}", [1, 16], "INT32") for i in range(2)]
    inputs[0].set_shared_memory("in", BYTES)
    inputs[1].set_shared_memory("in", BYTES, offset=BYTES)
    outputs = [module.InferRequestedOutput(f"OUTPUT{i}") for i in range(2)]
    outputs[0].set_shared_memory("out", BYTES)
    outputs[1].set_shared_memory("out", BYTES, offset=BYTES)
    result = client.infer("simple", inputs, outputs=outputs)
    total, difference = contents(out_handle), contents(out_handle, BYTES)
    assert np.array_equal(total, a + b) and np.array_equal(difference, a - b)
    answered = result.get_output("OUTPUT0")
    params = answered["parameters"] if module is httpclient else answered.parameters
    size = (
        params["shared_memory_byte_size"]
        if module is httpclient
        else params["shared_memory_byte_size"].int64_param
    )
    assert size == BYTES
    status = client.get_system_shared_memory_status()
    names = sorted(r["name"] for r in status) if module is httpclient else sorted(status.regions)
    assert names == ["in", "out"]
    client.unregister_system_shared_memory()
    with pytest.raises(InferenceServerException, match="Unable to find"):
        client.infer("simple", inputs, outputs=outputs)
    client.close()


def test_off_by_default(repo: Path, serve: Servers, regions: Any) -> None:
    running = serve(repo)
    for module in (httpclient, grpcclient):
        client = client_for(running, module)
        with pytest.raises(InferenceServerException, match="--shared-memory system"):
            client.register_system_shared_memory("in", regions[0], BYTES)
        client.close()


def test_keys_prefix_links_and_bounds(repo: Path, serve: Servers, regions: Any) -> None:
    in_key, _, _, _ = regions
    running = serve(repo, shared_memory="system")
    client = httpclient.InferenceServerClient(running.url)
    secret = f"/other_{uuid.uuid4().hex[:8]}"
    handle = create(secret, BYTES)
    link = Path(f"/dev/shm/modelserve_link_{uuid.uuid4().hex[:8]}")
    os.symlink(f"/dev/shm{secret}", link)
    try:
        cases = [
            (secret, 0, BYTES, "under the prefix"),
            (f"/{link.name}", 0, BYTES, "unable to open"),
            ("/modelserve_absent_x", 0, BYTES, "unable to open"),
            (in_key, BYTES, 2 * BYTES, "exceeds the object's size"),
            ("/modelserve_../etc", 0, BYTES, "POSIX shared-memory name"),
        ]
        for key, offset, size, message in cases:
            with pytest.raises(InferenceServerException, match=message) as caught:
                client.register_system_shared_memory("r", key, size, offset=offset)
            assert key not in str(caught.value) and "/dev/shm" not in str(caught.value)
    finally:
        link.unlink()
        handle.close()
        handle.unlink()
    client.register_system_shared_memory("in", in_key, BYTES)
    with pytest.raises(InferenceServerException, match="already in manager"):
        client.register_system_shared_memory("in", in_key, BYTES)
    x = httpclient.InferInput("INPUT0", [1, 16], "INT32")
    x.set_shared_memory("in", BYTES, offset=8)  # runs past the region's end
    y = httpclient.InferInput("INPUT1", [1, 16], "INT32")
    y.set_data_from_numpy(np.zeros((1, 16), dtype=np.int32))
    with pytest.raises(InferenceServerException, match="outside the region 'in'") as caught:
        client.infer("simple", [x, y])
    assert in_key not in str(caught.value)
    client.close()


def test_a_decoupled_model_reads_its_input_from_shared_memory(
    tmp_path: Path, serve: Servers, regions: Any
) -> None:
    in_key, in_handle, _, _ = regions
    config = {"max_batch_size": 0, "decoupled": True}
    write_python_model(tmp_path, "countdown", COUNTDOWN, config, entrypoint="Countdown")
    running = serve(tmp_path, shared_memory="system")
    client = grpcclient.InferenceServerClient(running.grpc_url)
    in_handle.buf[:4] = np.array([3], dtype=np.int32).tobytes()
    client.register_system_shared_memory("in", in_key, 4)
    answers: queue.Queue[Any] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    n = grpcclient.InferInput("N", [1], "INT32")
    n.set_shared_memory("in", 4)
    client.async_stream_infer("countdown", [n], request_id="s")
    tokens = []
    for _ in range(3):
        result, error = answers.get(timeout=30)
        assert error is None, error
        tokens.append(int(result.as_numpy("TOKEN")[0]))
    client.stop_stream()
    client.close()
    assert tokens == [3, 2, 1]
