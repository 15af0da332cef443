"""Model repositories on object storage: ``modelserve serve s3://bucket/prefix`` (and ``gs://``,
``az://``, any fsspec URL whose library is installed) keeps a local copy the server loads from.

The local cache, ``<cache>/``, holds one entry per model:

    <cache>/iris -> .objects/iris.4f2a…      a symbolic link, swapped in one rename
    <cache>/.objects/iris.4f2a…/1/model.onnx  one complete, verified copy ("generation")
    <cache>/.state/iris.json                  what that copy was made from (key, size, MD5)

A model that changed on the store is downloaded into a fresh folder beside the serving copy,
files that did not change are hard-linked from it, every download is checked (its size, and its
MD5 where the store keeps one: an S3 ETag of a single-part upload, GCS ``md5Hash``, Azure
``Content-MD5``), and only then does the link move to the new folder, atomically. The server
therefore never sees a half-downloaded version; a failed or corrupt download leaves the
serving copy as it was. The previous copy is kept until the next sync, so a load that started on
it can finish. In poll mode a changed model is taken only once its listing is the same on two
scans in a row (an upload in progress is left alone), like a local folder (docs/lifecycle.md).

Credentials come from the environment as each library reads them: for S3 ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, ``AWS_REGION``, web identity
(IRSA) and instance roles, with ``AWS_ENDPOINT_URL`` (or KServe's ``S3_ENDPOINT``) for an
S3-compatible store; ``GOOGLE_APPLICATION_CREDENTIALS`` or the metadata server for GCS;
``AZURE_STORAGE_CONNECTION_STRING`` or ``AZURE_STORAGE_ACCOUNT_NAME`` with a key, SAS token or
service principal for Azure. The libraries are the ``s3``, ``gcs`` and ``azure`` extras.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelserve.config.model import valid_model_name
from modelserve.errors import ModelLoadError

log = logging.getLogger("modelserve.serving.remote")

__all__ = [
    "RemoteFile",
    "RemoteRepository",
    "RemoteRepositoryError",
    "SyncPlan",
    "SyncReport",
    "check_remote_support",
    "default_cache_dir",
]

EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure"}
"""The modelserve extra that brings the library of each URL scheme."""
OBJECTS = ".objects"
STATE = ".state"
SOURCE_FILE = "source"
PARTIAL = ".partial-"
CHUNK = 1024 * 1024
PLAIN_MD5 = re.compile(r"^[0-9a-f]{32}$")


class RemoteRepositoryError(ModelLoadError):
    """The store cannot be listed or a model cannot be copied from it."""


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """One object of a model, as the store lists it."""

    path: str
    """Relative to the model's folder, with '/' separators."""
    size: int
    key: str
    """Changes whenever the object does (ETag, generation, modification time)."""
    md5: str | None
    """The object's MD5 as hex, when the store keeps one to check a download against."""


@dataclass(slots=True)
class ModelListing:
    name: str
    files: dict[str, RemoteFile] = field(default_factory=dict)
    folders: set[str] = field(default_factory=set)

    def signature(self) -> tuple[object, ...]:
        return (
            tuple(sorted(self.files.values(), key=lambda f: f.path)),
            tuple(sorted(self.folders)),
        )


@dataclass(slots=True)
class SyncPlan:
    """What a scan found: models to copy (new or changed), models to remove, models left alone
    for now because their listing is still changing (poll mode)."""

    changed: list[ModelListing] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)


@dataclass(slots=True)
class SyncReport:
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def check_remote_support(uri: str) -> None:
    """Raise RemoteRepositoryError, naming the extra to install, when no library serves the
    URL's scheme."""
    scheme = uri.split("://", 1)[0].lower()
    try:
        import fsspec
    except ImportError:
        raise RemoteRepositoryError(_install_hint(scheme)) from None
    try:
        fsspec.get_filesystem_class(scheme)
    except ImportError:
        raise RemoteRepositoryError(_install_hint(scheme)) from None
    except ValueError:
        raise RemoteRepositoryError(
            f"unknown repository URL scheme '{scheme}://' (use s3://, gs:// or az://)"
        ) from None


def _install_hint(scheme: str) -> str:
    extra = EXTRAS.get(scheme, "s3")
    return f"{scheme}:// repositories need the {extra} extra: pip install 'modelserve[{extra}]'"


def default_cache_dir(uri: str) -> Path:
    """``$XDG_CACHE_HOME/modelserve/repositories/<hash of the URI>`` (``~/.cache`` by default)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return base / "modelserve" / "repositories" / digest


def _storage_options(scheme: str) -> dict[str, Any]:
    """Options the library does not take from the environment by itself."""
    if scheme in ("s3", "s3a"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if not endpoint and os.environ.get("S3_ENDPOINT"):  # KServe's spelling
            https = os.environ.get("S3_USE_HTTPS", "1") not in ("0", "false", "False")
            endpoint = os.environ["S3_ENDPOINT"]
            if "://" not in endpoint:
                endpoint = ("https://" if https else "http://") + endpoint
        return {"endpoint_url": endpoint} if endpoint else {}
    return {}


def _remote_file(path: str, info: dict[str, Any]) -> RemoteFile:
    size = int(info.get("size") or 0)
    etag = info.get("ETag") or info.get("etag")
    key = str(
        info.get("generation")
        or etag
        or info.get("md5Hash")
        or info.get("mtime")
        or info.get("LastModified")
        or info.get("last_modified")
        or info.get("created")
        or ""
    )
    md5: str | None = None
    if isinstance(etag, str) and PLAIN_MD5.match(etag.strip('"')):
        md5 = etag.strip('"')
    if isinstance(info.get("md5Hash"), str):  # GCS, base64
        md5 = base64.b64decode(info["md5Hash"]).hex()
    settings = info.get("content_settings")
    content_md5 = settings.get("content_md5") if isinstance(settings, dict) else None
    if content_md5:  # Azure
        md5 = bytes(content_md5).hex()
    return RemoteFile(path, size, f"{size}:{key}", md5)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class RemoteRepository:
    """A remote repository and its local cache. ``sync`` is blocking (call it in a thread);
    several processes may share one cache (a file lock serialises them)."""

    def __init__(
        self,
        uri: str,
        cache_dir: Path | None = None,
        single_model: str | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        """``single_model``: the URI is one model's folder (``--model-name``), not a repository."""
        self.uri = uri.rstrip("/")
        self.cache_dir = cache_dir if cache_dir is not None else default_cache_dir(self.uri)
        self.single_model = single_model
        self._scheme = uri.split("://", 1)[0].lower()
        self._options = storage_options
        self._fs: Any = None
        self._base = ""
        self._seen: dict[str, tuple[object, ...]] = {}
        self._absent: set[str] = set()

    @property
    def local_root(self) -> Path:
        """The folder the server loads from: the cache, or the one model's entry in it."""
        if self.single_model is not None:
            return self.cache_dir / self.single_model
        return self.cache_dir

    def has_copy(self) -> bool:
        """Whether the cache holds a complete copy of at least one model."""
        return bool(self._cached_models())

    # ---- the store ---------------------------------------------------------------------------

    def _filesystem(self) -> Any:
        if self._fs is None:
            check_remote_support(self.uri)
            from fsspec.core import url_to_fs

            options = self._options if self._options is not None else {}
            # Our own instance (fsspec caches them): it reads the environment now, not when
            # some earlier repository of the process did.
            options = {"skip_instance_cache": True, **_storage_options(self._scheme), **options}
            self._fs, base = url_to_fs(self.uri, **options)
            self._base = str(base).rstrip("/")
        return self._fs

    def list_models(self) -> dict[str, ModelListing]:
        """Every model under the URI and its objects (one listing of the prefix)."""
        fs = self._filesystem()
        try:
            fs.invalidate_cache(self._base)
            found = fs.find(self._base, withdirs=True, detail=True)
        except FileNotFoundError as exc:
            raise RemoteRepositoryError(f"cannot list {self.uri}: {exc}") from None
        except Exception as exc:  # each library raises its own: credentials, network, denied
            raise RemoteRepositoryError(
                f"cannot list {self.uri}: {type(exc).__name__}: {exc}"
            ) from None
        models: dict[str, ModelListing] = {}
        prefix = self._base + "/"
        for name, info in found.items():
            name = str(name)
            if not name.startswith(prefix):
                continue
            relative = name[len(prefix) :]
            is_dir = info.get("type") == "directory" or relative.endswith("/")
            relative = relative.strip("/")
            if not relative:
                continue
            if self.single_model is not None:
                model, inner = self.single_model, relative
            elif "/" in relative:
                model, inner = relative.split("/", 1)
            elif is_dir:
                model, inner = relative, ""
            else:
                continue  # an object beside the model folders
            if not valid_model_name(model):
                log.warning("skipping %s/%s: not a valid model name", self.uri, model)
                continue
            listing = models.setdefault(model, ModelListing(model))
            if not inner:
                continue
            if any(part in ("", ".", "..") for part in inner.split("/")):
                log.warning("skipping %s: not a safe path", name)
                continue
            if is_dir:
                listing.folders.add(inner)
            else:
                listing.files[inner] = _remote_file(inner, info)
        return models

    # ---- scan and apply ----------------------------------------------------------------------

    def scan(self, settle: bool = False, only: Collection[str] | None = None) -> SyncPlan:
        """Compare the store with the cache. ``settle``: take a change only once the model's
        listing is the same as at the previous scan. ``only``: these models, no removals."""
        remote = self.list_models()
        if self.single_model is not None and not remote:
            raise RemoteRepositoryError(f"no objects under {self.uri}")
        plan = SyncPlan()
        for name, listing in sorted(remote.items()):
            if only is not None and name not in only:
                continue
            signature = listing.signature()
            stable = self._seen.get(name) == signature
            self._seen[name] = signature
            if self._up_to_date(listing):
                continue
            if settle and not stable:
                plan.unsettled.append(name)
                continue
            plan.changed.append(listing)
        if only is None:
            gone = sorted(set(self._cached_models()) - set(remote))
            for name in gone:
                self._seen.pop(name, None)
                if settle and name not in self._absent:
                    plan.unsettled.append(name)
                else:
                    plan.removed.append(name)
            self._absent = set(gone)
        return plan

    def apply(self, plan: SyncPlan) -> SyncReport:
        """Copy the changed models (each into a fresh folder, checked, then swapped in) and
        remove the removed ones. A model that fails keeps its previous copy."""
        report = SyncReport()
        self._prepare_cache()
        for listing in plan.changed:
            try:
                self._copy_model(listing)
            except RemoteRepositoryError as exc:
                report.failed[listing.name] = str(exc)
                log.error("model %s: %s", listing.name, exc)
            else:
                report.updated.append(listing.name)
        for name in plan.removed:
            self._remove_model(name)
            report.removed.append(name)
        self._collect_garbage()
        return report

    def sync(self, names: Collection[str] | None = None, settle: bool = False) -> SyncReport:
        """Scan and apply under the cache's lock."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with self._locked():
            self._prepare_cache()
            report = self.apply(self.scan(settle=settle, only=names))
        for name in report.updated:
            log.info("model %s synced from %s", name, self.uri)
        for name in report.removed:
            log.info("model %s removed from %s; dropped from the cache", name, self.uri)
        return report

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.cache_dir / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # ---- the cache ---------------------------------------------------------------------------

    def _prepare_cache(self) -> None:
        """Make the cache folder ours: empty or already a cache of this URI (else refuse)."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        state = self.cache_dir / STATE
        source = state / SOURCE_FILE
        if source.is_file():
            if source.read_text(encoding="utf-8").strip() == self.uri:
                return
            log.warning("cache %s held another repository; emptying it", self.cache_dir)
            for entry in self.cache_dir.iterdir():
                if entry.name == ".lock":
                    continue
                _remove(entry)
        elif any(p.name != ".lock" for p in self.cache_dir.iterdir()):
            raise RemoteRepositoryError(
                f"cache folder {self.cache_dir} is not empty and not a modelserve cache; "
                "give an empty or new folder with --repository-cache-dir"
            )
        state.mkdir(parents=True, exist_ok=True)
        (self.cache_dir / OBJECTS).mkdir(exist_ok=True)
        source.write_text(self.uri + "\n", encoding="utf-8")

    def _state_path(self, name: str) -> Path:
        return self.cache_dir / STATE / f"{name}.json"

    def _read_state(self, name: str) -> dict[str, Any]:
        try:
            data = json.loads(self._state_path(name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_state(self, name: str, data: dict[str, Any]) -> None:
        path = self._state_path(name)
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        temporary.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(temporary, path)

    def _cached_models(self) -> list[str]:
        folder = self.cache_dir / STATE
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob("*.json") if not p.name.startswith("."))

    def _up_to_date(self, listing: ModelListing) -> bool:
        """The cached copy matches the listing and its files are intact (size, mtime)."""
        state = self._read_state(listing.name)
        generation = state.get("generation")
        link = self.cache_dir / listing.name
        if (
            not generation
            or not link.is_symlink()
            or os.readlink(link) != f"{OBJECTS}/{generation}"
        ):
            return False
        if state.get("folders") != sorted(listing.folders):
            return False
        files: dict[str, Any] = state.get("files", {})
        if set(files) != set(listing.files):
            return False
        root = self.cache_dir / OBJECTS / generation
        for path, remote in listing.files.items():
            record = files[path]
            if record.get("key") != remote.key:
                return False
            try:
                stat = (root / path).stat()
            except OSError:
                return False
            if stat.st_size != record.get("size") or stat.st_mtime_ns != record.get("mtime_ns"):
                return False
        return True

    def _copy_model(self, listing: ModelListing) -> None:
        fs = self._filesystem()
        name = listing.name
        objects = self.cache_dir / OBJECTS
        generation = f"{name}.{secrets.token_hex(6)}"
        staging = objects / f"{PARTIAL}{generation}"
        state = self._read_state(name)
        current = state.get("generation")
        old_root = objects / current if current else None
        old_files: dict[str, Any] = state.get("files", {})
        records: dict[str, Any] = {}
        try:
            staging.mkdir(parents=True)
            for folder in listing.folders:
                (staging / folder).mkdir(parents=True, exist_ok=True)
            downloads: list[RemoteFile] = []
            for path, remote in sorted(listing.files.items()):
                target = staging / path
                target.parent.mkdir(parents=True, exist_ok=True)
                old = old_files.get(path)
                if old_root is not None and old is not None and old.get("key") == remote.key:
                    with contextlib.suppress(OSError):
                        os.link(old_root / path, target)
                        records[path] = {**old, "mtime_ns": target.stat().st_mtime_ns}
                        continue
                downloads.append(remote)
            if downloads:
                sources = [f"{self._base}/{name}/{f.path}" for f in downloads]
                if self.single_model is not None:
                    sources = [f"{self._base}/{f.path}" for f in downloads]
                targets = [str(staging / f.path) for f in downloads]
                try:
                    fs.get(sources, targets)
                except Exception as exc:
                    raise RemoteRepositoryError(
                        f"download from {self.uri} failed: {type(exc).__name__}: {exc}"
                    ) from None
                for remote, source in zip(downloads, sources, strict=True):
                    records[remote.path] = self._verify(staging / remote.path, remote, source)
            link = self.cache_dir / name
            if link.exists() and not link.is_symlink():
                raise RemoteRepositoryError(f"{link} is in the way (not a link the cache made)")
            final = objects / generation
            staging.rename(final)
            temporary_link = self.cache_dir / f".link-{generation}"
            temporary_link.symlink_to(f"{OBJECTS}/{generation}")
            os.replace(temporary_link, link)  # the swap: one atomic rename
        except BaseException:
            _remove(staging)
            raise
        self._write_state(
            name,
            {
                "generation": generation,
                "previous": current,
                "folders": sorted(listing.folders),
                "files": records,
            },
        )

    def _verify(self, path: Path, remote: RemoteFile, source: str) -> dict[str, Any]:
        """Check a downloaded file against the listing: its size, and its MD5 when known."""
        try:
            stat = path.stat()
        except OSError:
            raise RemoteRepositoryError(f"{remote.path}: not downloaded") from None
        if stat.st_size != remote.size:
            raise RemoteRepositoryError(
                f"{remote.path}: downloaded {stat.st_size} bytes, the store lists {remote.size}"
                " (changed during the download?)"
            )
        md5 = _md5(path)
        if remote.md5 is not None and md5 != remote.md5 and not self._md5_not_comparable(source):
            raise RemoteRepositoryError(
                f"{remote.path}: checksum mismatch (MD5 {md5}, the store lists {remote.md5}); "
                "the object changed during the download or was corrupted"
            )
        return {
            "key": remote.key,
            "size": remote.size,
            "md5": md5,
            "mtime_ns": stat.st_mtime_ns,
        }

    def _md5_not_comparable(self, source: str) -> bool:
        """S3 objects encrypted with SSE-KMS or SSE-C have ETags that are not their MD5."""
        try:
            info = self._fs.info(source, refresh=True)
        except Exception:
            return False
        kms = "kms" in str(info.get("ServerSideEncryption", "")).lower()
        return kms or bool(info.get("SSECustomerAlgorithm"))

    def _remove_model(self, name: str) -> None:
        link = self.cache_dir / name
        if link.is_symlink():
            link.unlink()
        self._state_path(name).unlink(missing_ok=True)

    def _collect_garbage(self) -> None:
        """Delete unfinished downloads and every copy that is neither current nor previous."""
        objects = self.cache_dir / OBJECTS
        if not objects.is_dir():
            return
        keep: set[str] = set()
        for name in self._cached_models():
            state = self._read_state(name)
            keep.update(str(state[k]) for k in ("generation", "previous") if state.get(k))
        for entry in objects.iterdir():
            if entry.name not in keep:
                _remove(entry)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
