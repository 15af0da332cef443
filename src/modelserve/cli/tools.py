"""Small offline commands: ``modelserve schema`` (the JSON schema of model.yaml, or of the server
settings) and ``modelserve token`` (a new API token and its auth-file entry)."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    schema = sub.add_parser("schema", help="print the JSON schema of model.yaml (or --settings)")
    schema.add_argument(
        "--settings",
        action="store_true",
        help="print the server settings instead: each option's flag, environment variable, "
        "server-file key, default and help",
    )
    schema.add_argument(
        "--markdown",
        action="store_true",
        help="with --settings: as the tables of docs/configuration.md",
    )
    schema.set_defaults(run=run_schema)
    token = sub.add_parser("token", help="print a new random API token and its auth-file entry")
    token.set_defaults(run=run_token)


_GROUP_TITLES = {
    "server": "Server",
    "models": "Models and lifecycle",
    "limits": "Limits",
    "security": "Security",
    "observability": "Observability",
    "events": "Payload logging and event streams",
}


def settings_markdown() -> str:
    """The server options as Markdown tables, one per group (docs/configuration.md)."""
    from modelserve.config.settings import option_specs

    lines: list[str] = []
    group = ""
    for spec in option_specs():
        if spec.hidden:
            continue
        if spec.group != group:
            group = spec.group
            lines += ["", f"### {_GROUP_TITLES[group]}", ""]
            lines += ["| flag | environment | file key | default | what it does |"]
            lines += ["|---|---|---|---|---|"]
        default = spec.info.default
        shown = (
            "required"
            if spec.info.is_required()
            else "—"
            if default is None or default == ()
            else f"`{default}`"
        )
        flag = f"`{spec.field}` (argument)" if spec.positional else f"`{spec.flag}`"
        text = (spec.info.description or "").replace("<", "&lt;").replace("|", "\\|")
        lines.append(f"| {flag} | `{spec.env}` | `{spec.key}` | {shown} | {text} |")
    return "\n".join(lines).strip() + "\n"


def run_schema(args: argparse.Namespace) -> int:
    if args.settings and args.markdown:
        print(settings_markdown(), end="")
        return 0
    if args.settings:
        from modelserve.config.settings import option_specs

        rows = [
            {
                "flag": spec.field if spec.positional else spec.flag,
                "env": spec.env,
                "key": spec.key,
                "default": None if spec.info.is_required() else spec.info.default,
                "help": spec.info.description,
            }
            for spec in option_specs()
        ]
        print(json.dumps(rows, indent=2, default=str))
        return 0
    from modelserve.config.model import ModelConfig

    print(json.dumps(ModelConfig.model_json_schema(), indent=2))
    return 0


def run_token(args: argparse.Namespace) -> int:
    import secrets

    from modelserve.security.auth import hash_token

    token = secrets.token_urlsafe(32)
    print(f"token: {token}")
    print("auth-file entry (keeps only the digest):")
    print(f"- name: CHANGE-ME\n  token_sha256: {hash_token(token)}\n  scopes: [infer]")
    return 0
