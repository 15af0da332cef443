"""The REST API's own description: ``/openapi.json`` (a static OpenAPI 3.1 document shipped in the
package, next to this module) and ``/docs`` (an HTML page generated from it: no scripts, nothing
fetched from elsewhere). Both are read once, on first use."""

from __future__ import annotations

import functools
import html
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson

__all__ = ["StaticDocument", "openapi_document", "static_document"]

DOCUMENT_FILE = "openapi.json"


@dataclass(frozen=True, slots=True)
class StaticDocument:
    content_type: bytes
    body: bytes


@functools.cache
def openapi_document() -> dict[str, Any]:
    text = resources.files(__package__ or "modelserve.transports.http").joinpath(DOCUMENT_FILE)
    document: dict[str, Any] = orjson.loads(text.read_bytes())
    return document


def _schema_name(node: Any) -> str:
    if isinstance(node, dict) and isinstance(node.get("$ref"), str):
        return str(node["$ref"]).rsplit("/", 1)[-1]
    if isinstance(node, dict) and "type" in node:
        return str(node["type"])
    return ""


def _operation_html(path: str, method: str, operation: dict[str, Any]) -> str:
    params = ", ".join(
        f"{html.escape(p['name'])} ({html.escape(p['in'])})"
        for p in operation.get("parameters", [])
    )
    body = operation.get("requestBody", {}).get("content", {})
    bodies = ", ".join(
        f"{html.escape(kind)}: {html.escape(_schema_name(media.get('schema')))}"
        for kind, media in body.items()
    )
    codes = ", ".join(html.escape(code) for code in operation.get("responses", {}))
    open_access = operation.get("security") is not None and {} in operation["security"]
    rows = [
        f"<h3><code>{method.upper()} {html.escape(path)}</code></h3>",
        f"<p>{html.escape(operation.get('summary', ''))}</p><ul>",
    ]
    if params:
        rows.append(f"<li>parameters: {params}</li>")
    if bodies:
        rows.append(f"<li>body: {bodies}</li>")
    rows.append(f"<li>responses: {codes}</li>")
    rows.append(f"<li>token: {'not needed by default' if open_access else 'when auth is on'}</li>")
    rows.append("</ul>")
    return "\n".join(rows)


@functools.cache
def docs_page() -> bytes:
    document = openapi_document()
    info = document.get("info", {})
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(info.get('title', 'API'))}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:auto}"
        "code{background:#eee;padding:0 .2em}</style></head><body>",
        f"<h1>{html.escape(info.get('title', 'API'))}</h1>",
        f"<p>{html.escape(info.get('description', ''))}</p>",
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a></p>",
    ]
    schemas = document.get("components", {}).get("schemas", {})
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            parts.append(_operation_html(path, method, operation))
    parts.append("<h2>Schemas</h2>")
    for name, schema in schemas.items():
        text = orjson.dumps(schema, option=orjson.OPT_INDENT_2).decode()
        parts.append(f"<h3 id='{html.escape(name)}'>{html.escape(name)}</h3>")
        parts.append(f"<pre>{html.escape(text)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts).encode("utf-8")


@functools.cache
def _openapi_bytes() -> bytes:
    return orjson.dumps(openapi_document())


def static_document(path: str) -> StaticDocument | None:
    """The answer for ``/openapi.json`` or ``/docs``; None for any other path."""
    if path == "/openapi.json":
        return StaticDocument(b"application/json", _openapi_bytes())
    if path == "/docs":
        return StaticDocument(b"text/html; charset=utf-8", docs_page())
    return None
