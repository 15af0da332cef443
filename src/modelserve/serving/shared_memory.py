"""Triton's system shared-memory extension: clients on the same host register POSIX shared-memory
regions (``/dev/shm``) and name them in requests instead of sending tensor bytes through the
socket; inputs are read from a region, outputs written into one.

Security first (Triton's 2025 CVE chain went through this API): the extension is off unless the
server runs with ``--shared-memory system``; registering needs the admin scope (transports/
access.py); only keys of the form ``/name`` under the configured prefix are opened, never through
a symbolic link, only regular files; every offset and size is checked against the region and the
tensor; error messages never name a key, a path or another client's region. Input bytes are
copied out of the region before the model runs, so a client changing them meanwhile changes
nothing.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import stat
from dataclasses import dataclass

import numpy as np

from modelserve.codecs.tensors import decode_raw, encode_raw
from modelserve.errors import FailedPrecondition, InvalidArgument, NotFound
from modelserve.types import Parameters, RequestedOutput, Tensor

__all__ = ["REGION", "RegionStatus", "SharedMemory", "read_inputs", "write_outputs"]

SHM_DIR = "/dev/shm"
REGION = "shared_memory_region"
BYTE_SIZE = "shared_memory_byte_size"
OFFSET = "shared_memory_offset"
MAX_REGIONS = 256
_KEY = re.compile(r"^/[A-Za-z0-9_.\-]{1,200}$")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


@dataclass(frozen=True, slots=True)
class RegionStatus:
    name: str
    key: str
    offset: int
    byte_size: int


@dataclass(slots=True)
class _Region:
    status: RegionStatus
    memory: mmap.mmap
    base: int
    """Where the region starts in ``memory`` (mappings start on a page boundary)."""


class SharedMemory:
    """The registered regions of this server process."""

    def __init__(self, enabled: bool = False, prefix: str = "/") -> None:
        self.enabled = enabled
        self.prefix = prefix
        self._regions: dict[str, _Region] = {}

    def _check_enabled(self) -> None:
        if not self.enabled:
            raise FailedPrecondition(
                "system shared memory is off; start the server with --shared-memory system"
            )

    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        self._check_enabled()
        if not _NAME.match(name):
            raise InvalidArgument(
                "shared memory region names are 1-128 letters, digits, '_', '.' or '-'"
            )
        if name in self._regions:
            raise InvalidArgument(f"shared memory region '{name}' already in manager")
        if len(self._regions) >= MAX_REGIONS:
            raise InvalidArgument(f"too many shared memory regions (at most {MAX_REGIONS})")
        if not _KEY.match(key) or key in ("/.", "/..") or not key.startswith(self.prefix):
            raise InvalidArgument(
                f"failed to register shared memory region '{name}': the key must be a POSIX "
                "shared-memory name ('/' then letters, digits, '_', '.' or '-') under the "
                "prefix the server allows (--shared-memory-prefix)"
            )
        if offset < 0 or byte_size <= 0:
            raise InvalidArgument(
                f"failed to register shared memory region '{name}': byte_size must be "
                "positive and offset not negative"
            )
        try:
            fd = os.open(os.path.join(SHM_DIR, key[1:]), os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise InvalidArgument(
                f"failed to register shared memory region '{name}': unable to open the key "
                f"({os.strerror(exc.errno or 0)})"
            ) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise InvalidArgument(
                    f"failed to register shared memory region '{name}': the key is not a "
                    "shared-memory object"
                )
            if offset + byte_size > info.st_size:
                raise InvalidArgument(
                    f"failed to register shared memory region '{name}': offset {offset} + "
                    f"byte_size {byte_size} exceeds the object's size {info.st_size}"
                )
            aligned = offset - offset % mmap.ALLOCATIONGRANULARITY
            memory = mmap.mmap(fd, offset + byte_size - aligned, offset=aligned)
        finally:
            os.close(fd)
        status = RegionStatus(name, key, offset, byte_size)
        self._regions[name] = _Region(status, memory, offset - aligned)

    def unregister(self, name: str = "") -> None:
        """Drop a region (every region when ``name`` is empty); an unknown name is no error."""
        self._check_enabled()
        names = [name] if name else list(self._regions)
        for each in names:
            region = self._regions.pop(each, None)
            if region is not None:
                with contextlib.suppress(BufferError):  # a view still held: freed with it
                    region.memory.close()

    def status(self, name: str = "") -> list[RegionStatus]:
        self._check_enabled()
        if name:
            return [self._region(name).status]
        return [region.status for region in self._regions.values()]

    def close(self) -> None:
        self.unregister() if self.enabled else None

    def _region(self, name: str) -> _Region:
        region = self._regions.get(name)
        if region is None:
            raise NotFound(f"Unable to find system shared memory region: '{name}'")
        return region

    def _span(self, where: str, name: str, offset: int, byte_size: int) -> tuple[_Region, int]:
        region = self._region(name)
        size = region.status.byte_size
        if offset < 0 or byte_size < 0 or offset + byte_size > size:
            raise InvalidArgument(
                f"{where}: shared memory offset {offset} + byte_size {byte_size} is outside "
                f"the region '{name}' ({size} bytes)"
            )
        return region, region.base + offset

    def read(self, where: str, name: str, offset: int, byte_size: int) -> bytes:
        """A copy of ``byte_size`` bytes at ``offset`` of a region."""
        self._check_enabled()
        region, start = self._span(where, name, offset, byte_size)
        return bytes(region.memory[start : start + byte_size])

    def write(self, where: str, name: str, offset: int, byte_size: int, data: bytes) -> None:
        """Put ``data`` at ``offset`` of a region, where the client gave ``byte_size`` for it."""
        self._check_enabled()
        if len(data) > byte_size:
            raise InvalidArgument(
                f"{where}: {len(data)} bytes do not fit in shared_memory_byte_size {byte_size}"
            )
        region, start = self._span(where, name, offset, byte_size)
        region.memory[start : start + len(data)] = data


def _int_param(where: str, params: Parameters, key: str, default: int | None) -> int:
    value = params.get(key, default)
    if value is None:
        raise InvalidArgument(f"{where}: '{key}' is missing (with '{REGION}')")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument(f"{where}: '{key}' must be a non-negative integer")
    return value


def _region_param(where: str, params: Parameters) -> str:
    name = params[REGION]
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"{where}: '{REGION}' must be a region name")
    return name


def read_inputs(memory: SharedMemory, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """The inputs with those in shared memory read from their regions (a copy)."""
    read = []
    for tensor in inputs:
        params = tensor.parameters
        if not params or REGION not in params:
            read.append(tensor)
            continue
        where = f"input '{tensor.name}'"
        name = _region_param(where, params)
        size = _int_param(where, params, BYTE_SIZE, None)
        offset = _int_param(where, params, OFFSET, 0)
        data = memory.read(where, name, offset, size)
        array = decode_raw(tensor.name, tensor.datatype, tensor.shape, data)
        read.append(Tensor(tensor.name, tensor.datatype, tensor.shape, array, params))
    return tuple(read)


def write_outputs(
    memory: SharedMemory, outputs: tuple[Tensor, ...], requested: tuple[RequestedOutput, ...]
) -> tuple[Tensor, ...]:
    """The outputs asked for in shared memory written into their regions; they are answered
    with their region and byte size instead of their data."""
    wanted = {out.name: out.parameters for out in requested if REGION in out.parameters}
    answered = []
    for tensor in outputs:
        params = wanted.get(tensor.name)
        if params is None:
            answered.append(tensor)
            continue
        where = f"output '{tensor.name}'"
        name = _region_param(where, params)
        size = _int_param(where, params, BYTE_SIZE, None)
        offset = _int_param(where, params, OFFSET, 0)
        raw = encode_raw(tensor.data, tensor.datatype)
        memory.write(where, name, offset, size, raw)
        shown: dict[str, str | int | float | bool] = {REGION: name, BYTE_SIZE: len(raw)}
        if offset:
            shown[OFFSET] = offset
        empty = np.empty(0, dtype=tensor.data.dtype)
        answered.append(Tensor(tensor.name, tensor.datatype, tensor.shape, empty, shown))
    return tuple(answered)
