"""Command-line flags made from the Settings fields (config/settings.py), so that a server option
is written once: its flag, help text, choices and default all come from the field.

Every flag is parsed with ``default=SUPPRESS``: only what the user typed reaches
``config.sources.build_settings``, which lets the environment and the server file fill the rest.
Values stay strings here; pydantic converts and checks them, and the error names the flag.
"""

from __future__ import annotations

import argparse
import typing
from typing import Any, Literal

from modelserve.config.settings import OptionSpec, option_specs

__all__ = ["add_settings_flags", "given_settings"]

_GROUP_TITLES = {
    "server": "server",
    "models": "models and lifecycle (docs/lifecycle.md)",
    "limits": "limits (docs/security.md)",
    "security": "security (docs/security.md)",
    "observability": "observability (docs/observability.md)",
    "events": "payload logging and event streams (docs/payload-logging.md)",
}


def _choices(annotation: Any) -> list[str] | None:
    if typing.get_origin(annotation) is Literal:
        return [str(value) for value in typing.get_args(annotation)]
    return None


def _help(spec: OptionSpec) -> str:
    if spec.hidden:
        return argparse.SUPPRESS
    text = spec.info.description or ""
    default = spec.info.default
    shown = default is not None and default is not ... and default is not False
    if shown and default != () and not spec.positional:
        text += f" [default: {default}]"
    return f"{text} [env {spec.env}]".replace("%", "%%")


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per Settings option (the repository as the positional argument), grouped as
    in ``--help``."""
    groups = {name: parser.add_argument_group(title) for name, title in _GROUP_TITLES.items()}
    for spec in option_specs():
        annotation = spec.info.annotation
        target = groups[spec.group]
        if spec.positional:
            parser.add_argument(spec.field, nargs="?", default=argparse.SUPPRESS, help=_help(spec))
            continue
        kwargs: dict[str, Any] = {
            "dest": spec.field,
            "default": argparse.SUPPRESS,
            "help": _help(spec),
        }
        if annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(annotation) in (tuple, list):
            kwargs["action"] = "append"
        else:
            choices = _choices(annotation)
            if choices is not None:
                kwargs["choices"] = choices
            else:
                kwargs["metavar"] = spec.metavar or spec.key.upper()
        if spec.metavar and "metavar" not in kwargs:
            kwargs["metavar"] = spec.metavar
        target.add_argument(spec.flag, **kwargs)


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the user typed on the command line, by field name."""
    values = {}
    for spec in option_specs():
        if hasattr(args, spec.field):
            value = getattr(args, spec.field)
            values[spec.field] = tuple(value) if isinstance(value, list) else value
    return values
