"""Where settings come from, and in which order they win: a command-line flag over its
``MODELSERVE_*`` environment variable over the server file (``--config server.yaml``) over the
default written in config/settings.py.

Values from the environment are strings; lists there are comma-separated
(``MODELSERVE_LOAD_MODELS=a,b``). pydantic turns strings into the field's type, so
``MODELSERVE_HTTP_PORT=0`` and ``http_port: 0`` mean the same. An unknown key in the file, or a
value no source can make valid, is a ``SettingsError`` naming the source, the key and what is
wrong, never a traceback.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from modelserve.config.settings import OptionSpec, Settings, is_remote_uri, option_specs

__all__ = ["SettingsError", "build_settings", "read_server_file"]


class SettingsError(ValueError):
    """Settings that cannot be used; the message names where the bad value came from."""


def _is_sequence(spec: OptionSpec) -> bool:
    origin = typing.get_origin(spec.info.annotation)
    return origin in (tuple, list)


def read_server_file(path: Path) -> dict[str, Any]:
    """The keys of a server file (YAML), by the option's key; unknown keys are an error."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"cannot read the server file {path}: {exc.strerror or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    known = {spec.key: spec for spec in option_specs()}
    unknown = sorted(str(key) for key in data if key not in known)
    if unknown:
        raise SettingsError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    values: dict[str, Any] = {}
    for key, value in data.items():
        spec = known[key]
        if spec.field == "model_repository" and isinstance(value, str) and not is_remote_uri(value):
            value = str((path.parent / value) if not Path(value).is_absolute() else value)
        values[spec.field] = value
    return values


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for spec in option_specs():
        raw = env.get(spec.env)
        if raw is None:
            continue
        if _is_sequence(spec):
            values[spec.field] = tuple(item.strip() for item in raw.split(",") if item.strip())
        elif raw == "" and spec.info.default is None:
            values[spec.field] = None
        else:
            values[spec.field] = raw
    return values


def _where(field: str, origin: dict[str, str]) -> str:
    specs = {spec.field: spec for spec in option_specs()}
    spec = specs.get(field)
    if spec is None:
        return field
    source = origin.get(field)
    if source == "env":
        return spec.env
    if source is not None and source.startswith("file:"):
        return f"{spec.key} in {source[5:]}"
    return spec.key if spec.positional else spec.flag


def build_settings(
    flags: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
    **program: Any,
) -> Settings:
    """Settings from the flags given (by field name; only those the user typed), the
    environment (default: ``os.environ``) and the server file, plus fields the program sets
    (``auth_tokens``)."""
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    if config_file is not None:
        for field, value in read_server_file(config_file).items():
            values[field], origin[field] = value, f"file:{config_file}"
    for field, value in _from_env(os.environ if env is None else env).items():
        values[field], origin[field] = value, "env"
    for field, value in flags.items():
        values[field], origin[field] = value, "flag"
    values.update(program)
    if "model_repository" not in values:
        raise SettingsError(
            "no model repository: give it as the argument, as MODELSERVE_MODEL_REPOSITORY or "
            "as model_repository in the server file"
        )
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = []
        for item in exc.errors():
            loc = item["loc"]
            where = _where(str(loc[0]), origin) if loc else "settings"
            problems.append(f"{where}: {item['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
