"""``execution: process``: a model's instances run in worker processes.

For GIL-bound models (the python runtime, scikit-learn on small inputs) threads cannot use more
than one core; worker processes can. Each worker loads the model itself and answers one batch at
a time over a pipe. Tensors cross the boundary as pickle protocol 5 *out-of-band buffers*: a
small header plus the arrays' raw memory, sent with ``send_bytes`` (no per-element pickling;
BYTES object arrays are the exception, as they hold Python objects). The pipe is private to this
process and its children, so unpickling it is safe.

A worker that dies fails its in-flight batch cleanly (500, never a hang) and is replaced in the
background; the other workers keep serving meanwhile.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import queue
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from modelserve.errors import InternalError, ModelLoadError, Unavailable
from modelserve.runtimes.base import Arrays, LoadContext, Runtime
from modelserve.types import RuntimeSignature

log = logging.getLogger("modelserve.scheduling.process_pool")

START_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class _Ready:
    signature: RuntimeSignature
    platform: str


@dataclass(frozen=True, slots=True)
class _Failed:
    kind: str
    """"load" (at start), "value" (predict raised ValueError: the client's input) or "error"."""
    message: str


def _send(conn: Connection, obj: object) -> None:
    buffers: list[pickle.PickleBuffer] = []
    header = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    conn.send_bytes(len(buffers).to_bytes(4, "little") + header)
    for buffer in buffers:
        conn.send_bytes(buffer.raw())


def _receive(conn: Connection) -> Any:
    first = conn.recv_bytes()
    count = int.from_bytes(first[:4], "little")
    buffers = [conn.recv_bytes() for _ in range(count)]
    return pickle.loads(first[4:], buffers=buffers)  # our own child process: trusted


def _worker_main(conn: Connection, ctx: LoadContext, target: str) -> None:
    """The worker process: load, report the signature, then answer predict calls."""
    from modelserve.runtimes.registry import RuntimeRegistry

    try:
        runtime = RuntimeRegistry().resolve(target).load(ctx)
    except Exception as exc:
        _send(conn, _Failed("load", f"{type(exc).__name__}: {exc}"))
        return
    _send(conn, _Ready(runtime.signature(), runtime.platform))
    while True:
        try:
            arrays = _receive(conn)
        except (EOFError, OSError):
            break
        try:
            result: object = runtime.predict(arrays)
        except ValueError as exc:
            result = _Failed("value", str(exc))
        except Exception as exc:
            result = _Failed("error", f"{type(exc).__name__}: {exc}")
        _send(conn, result)
    runtime.unload()


class _Worker:
    def __init__(self, ctx: LoadContext, target: str) -> None:
        mp = multiprocessing.get_context("spawn")
        self.conn, child = mp.Pipe()
        self.process = mp.Process(
            target=_worker_main,
            args=(child, ctx, target),
            name=f"modelserve-{ctx.model_name}-v{ctx.version}",
            daemon=True,
        )
        self.process.start()
        child.close()

    def wait_ready(self) -> _Ready:
        if not self.conn.poll(START_TIMEOUT_S):
            self.stop()
            raise ModelLoadError(f"worker process did not load the model in {START_TIMEOUT_S} s")
        try:
            answer = _receive(self.conn)
        except (EOFError, OSError):
            raise ModelLoadError("worker process died while loading the model") from None
        if isinstance(answer, _Failed):
            self.stop()
            raise ModelLoadError(answer.message)
        assert isinstance(answer, _Ready)
        return answer

    def stop(self) -> None:
        self.conn.close()
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)


class ProcessRuntime(Runtime):
    """Wraps the real runtime (named by ``target``) running in ``instances`` worker processes."""

    def __init__(
        self, ctx: LoadContext, target: str, workers: list[_Worker], ready: _Ready
    ) -> None:
        self._ctx = ctx
        self._target = target
        self._signature = ready.signature
        self.platform = ready.platform  # type: ignore[misc]  # per instance, from the child
        self._idle: queue.Queue[_Worker] = queue.Queue()
        for worker in workers:
            self._idle.put(worker)
        self._all = list(workers)
        self._closed = False
        self._lock = threading.Lock()

    @classmethod
    def load(cls, ctx: LoadContext) -> Runtime:
        raise ModelLoadError("ProcessRuntime is created with ProcessRuntime.start")

    @classmethod
    def start(cls, ctx: LoadContext, target: str) -> ProcessRuntime:
        workers = [_Worker(ctx, target) for _ in range(ctx.config.instances)]
        try:
            readies = [worker.wait_ready() for worker in workers]
        except BaseException:
            for worker in workers:
                worker.stop()
            raise
        return cls(ctx, target, workers, readies[0])

    def signature(self) -> RuntimeSignature:
        return self._signature

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._all if w.process.pid is not None]

    def predict(self, inputs: Arrays) -> Arrays:
        """Called from an executor thread: hand the batch to an idle worker and wait."""
        worker = self._idle_worker()
        try:
            _send(worker.conn, inputs)
            answer = _receive(worker.conn)
        except (EOFError, OSError, BrokenPipeError):
            self._replace(worker)
            raise InternalError(
                f"the worker process of model '{self._ctx.model_name}' died during the request"
            ) from None
        self._idle.put(worker)
        if isinstance(answer, _Failed):
            if answer.kind == "value":
                raise ValueError(answer.message)
            raise InternalError(f"model '{self._ctx.model_name}' failed: {answer.message}")
        if not isinstance(answer, dict):
            raise InternalError(f"model '{self._ctx.model_name}' returned {type(answer).__name__}")
        return answer

    def _idle_worker(self) -> _Worker:
        while True:
            try:
                worker = self._idle.get(timeout=START_TIMEOUT_S)
            except queue.Empty:
                raise Unavailable(
                    f"no worker process of model '{self._ctx.model_name}' is available"
                ) from None
            if worker.process.is_alive():
                return worker
            self._replace(worker)  # died while idle: replace it, take another

    def _replace(self, dead: _Worker) -> None:
        log.error(
            "worker process %s of model %s version %s died (exit %s); starting a new one",
            dead.process.pid,
            self._ctx.model_name,
            self._ctx.version,
            dead.process.exitcode,
        )
        dead.stop()

        def restart() -> None:
            try:
                fresh = _Worker(self._ctx, self._target)
                fresh.wait_ready()
            except Exception:
                log.exception("could not restart a worker of model %s", self._ctx.model_name)
                return
            with self._lock:
                if self._closed:
                    fresh.stop()
                    return
                self._all = [w for w in self._all if w is not dead] + [fresh]
            self._idle.put(fresh)

        threading.Thread(target=restart, name="modelserve-worker-restart", daemon=True).start()

    def unload(self) -> None:
        with self._lock:
            self._closed = True
            workers = list(self._all)
        for worker in workers:
            worker.stop()
