"""``modelserve repo``: Triton model repositories.

``repo check DIR`` reads every model folder as the server would and prints, per model, where its
configuration comes from and, for Triton's ``config.pbtxt``, the fields mapped, ignored and
unsupported (a table on a terminal, plain lines otherwise); the exit code is 1 when a model would
be refused. ``repo export --triton DIR`` writes ``config.pbtxt`` beside the model.yaml of each
ONNX model, from the signature the server would serve, so that Triton can serve the folder.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    repo = sub.add_parser("repo", help="check a model repository, or export it for Triton")
    commands = repo.add_subparsers(dest="repo_command", required=True, metavar="ACTION")
    check = commands.add_parser(
        "check",
        help="per model: its config's source, the config.pbtxt fields mapped, "
        "ignored and unsupported",
    )
    check.add_argument("repository", type=Path, help="the model repository folder")
    check.set_defaults(run=run_check)
    export = commands.add_parser(
        "export", help="write config.pbtxt for the repository's ONNX models (--triton)"
    )
    export.add_argument("repository", type=Path, help="the model repository folder")
    export.add_argument(
        "--triton", action="store_true", required=True, help="Triton's config.pbtxt (required)"
    )
    export.add_argument(
        "--force", action="store_true", help="replace a config.pbtxt that is already there"
    )
    export.set_defaults(run=run_export)


@dataclass(slots=True)
class _Row:
    name: str
    source: str
    status: str = "ok"
    mapped: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)


def _models(root: Path) -> list[Path]:
    from modelserve.cli.main import CommandError
    from modelserve.config.model import valid_model_name

    if not root.is_dir():
        raise CommandError(f"{root} is not a directory")
    return [
        p
        for p in sorted(root.iterdir())
        if p.is_dir() and not p.name.startswith(".") and valid_model_name(p.name)
    ]


def _check(folder: Path) -> _Row:
    from modelserve.config.model import MODEL_CONFIG_FILE, load_model_config
    from modelserve.config.pbtxt import PBTXT_FILE, load_pbtxt
    from modelserve.errors import ModelLoadError

    if (folder / MODEL_CONFIG_FILE).is_file() or not (folder / PBTXT_FILE).is_file():
        row = _Row(
            folder.name, MODEL_CONFIG_FILE if (folder / MODEL_CONFIG_FILE).is_file() else "-"
        )
        if (folder / PBTXT_FILE).is_file():
            row.ignored.append(f"{PBTXT_FILE} (model.yaml is read instead)")
        try:
            load_model_config(folder)
        except ModelLoadError as exc:
            row.status = f"refused: {exc}"
        return row
    mapping = load_pbtxt(folder)
    row = _Row(folder.name, PBTXT_FILE, mapped=mapping.mapped, ignored=mapping.ignored)
    row.unsupported = mapping.unsupported
    if mapping.config is None:
        row.status = f"refused: {mapping.error}"
    return row


def run_check(args: argparse.Namespace) -> int:
    root: Path = args.repository
    rows = [_check(folder) for folder in _models(root)]
    for row in rows:  # reasons name files relative to the repository
        row.status = row.status.replace(f"{root.absolute()}/", "").replace(f"{root}/", "")
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{root}: {len(rows)} model(s)")
        for column in ("model", "config", "status", "mapped", "ignored", "unsupported"):
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(
                row.name,
                row.source,
                row.status,
                "\n".join(row.mapped),
                "\n".join(row.ignored),
                "\n".join(row.unsupported),
            )
        Console().print(table)
    else:
        for row in rows:
            print(f"{row.name}: {row.source}: {row.status}")
            for kind in ("mapped", "ignored", "unsupported"):
                items = getattr(row, kind)
                if items:
                    print(f"  {kind}: {', '.join(items)}")
    return 1 if any(row.status != "ok" for row in rows) else 0


def run_export(args: argparse.Namespace) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from modelserve.cli.main import CommandError
    from modelserve.config.pbtxt import ONNX_BACKEND, ONNX_PLATFORM, PBTXT_FILE, to_pbtxt
    from modelserve.runtimes.base import LoadContext
    from modelserve.runtimes.registry import RuntimeRegistry
    from modelserve.serving.repository import ModelRepository

    root: Path = args.repository
    folders = _models(root)
    written, skipped = 0, []
    with ThreadPoolExecutor(1) as executor:
        repository = ModelRepository(root, RuntimeRegistry(), executor)
        for folder in folders:
            target = folder / PBTXT_FILE
            if target.exists() and not args.force and not (folder / "model.yaml").is_file():
                continue  # already a Triton model
            plan = repository.prepare(folder.name)
            if plan.error:
                skipped.append(f"{folder.name} ({plan.error})")
                continue
            assert plan.config is not None
            newest = plan.selected[-1]
            try:
                loaded = repository._load_version(
                    folder.name, folder, plan.config, newest, plan.folders[newest]
                )
            except Exception as exc:
                skipped.append(f"{folder.name} ({exc})")
                continue
            try:
                if loaded.runtime_name != "onnx":
                    skipped.append(f"{folder.name} (runtime {loaded.runtime_name}, not ONNX)")
                    continue
                if target.exists() and not args.force:
                    raise CommandError(f"{target} exists; give --force to replace it")
                document = loaded.triton_config()
                document["platform"], document["backend"] = ONNX_PLATFORM, ONNX_BACKEND
                context = LoadContext(
                    folder.name, newest, folder, plan.folders[newest], plan.config
                )
                artifact = context.find_artifact((".onnx",)).name
                if artifact != "model.onnx":
                    document["default_model_filename"] = artifact
                for group in document.get("instance_group", []):
                    group.pop("name", None)
                target.write_text(to_pbtxt(document), encoding="utf-8")
                written += 1
                print(f"{folder.name}: wrote {target}")
            finally:
                if loaded.runtime is not None:
                    loaded.runtime.unload()
    for item in skipped:
        print(f"skipped {item}", file=sys.stderr)
    if not written and not skipped:
        raise CommandError(f"no model folders in {root}")
    return 0
