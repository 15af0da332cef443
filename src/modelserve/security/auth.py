"""Authentication and authorization: credentials ➜ principal ➜ allowed action. Pure logic.

Clients send ``Authorization: Bearer <token>`` (REST header, gRPC metadata). Tokens come from a
file (``--auth-file``) or ``MODELSERVE_TOKEN_<NAME>`` environment variables, never from the
command line, and only their SHA-256 digests are kept. Presented tokens are hashed and compared
with every known digest in constant time (``hmac.compare_digest``). A token is never logged,
never echoed in an error, never kept in plain text past start-up.

Scopes (see docs/security.md):
- ``infer``: inference on every model; ``infer:<model>``: inference on that model. Either also
  lets the holder read that model's metadata, configuration and readiness (clients need them).
- ``read``: every read: server metadata, repository index, metadata/config/readiness/statistics
  of any model, metrics.
- ``feedback``: send the true labels of earlier predictions (``POST /v2/models/<m>/labels``).
- ``admin``: repository load/unload and every management call, and ``feedback``.

The transports map each route or RPC to an ``Action`` (transports/access.py) and call
``Authenticator.check`` in one place each.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from modelserve.config.model import valid_model_name
from modelserve.config.settings import TokenConfig
from modelserve.errors import PermissionDenied, Unauthenticated

log = logging.getLogger("modelserve.security.auth")

__all__ = [
    "ENV_PREFIX",
    "Action",
    "Authenticator",
    "Principal",
    "bearer_token",
    "exposure_warning",
    "hash_token",
    "load_token_file",
    "tokens_from_env",
]

ENV_PREFIX = "MODELSERVE_TOKEN_"
MIN_TOKEN_LENGTH = 16
"""Plain-text tokens shorter than this are refused: use ``modelserve token`` to make one."""


class Action(Enum):
    PUBLIC = "public"
    """Health probes and the API description: open unless --auth-health; then any valid token."""
    METADATA = "metadata"
    """Server metadata: any valid token."""
    READ = "read"
    """Server-wide reads: repository index, statistics of every model, metrics."""
    MODEL_READ = "model_read"
    """Metadata, configuration, readiness, statistics of one model."""
    INFER = "infer"
    FEEDBACK = "feedback"
    """True labels of earlier predictions (model monitoring); ``admin`` implies it."""
    ADMIN = "admin"
    """Repository load/unload and any route or RPC the transports do not know (fail closed)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who sent a request, and what the token's scopes allow."""

    name: str
    read: bool = False
    admin: bool = False
    feedback: bool = False
    infer_all: bool = False
    infer_models: frozenset[str] = frozenset()

    @classmethod
    def from_scopes(cls, name: str, scopes: Iterable[str]) -> Principal:
        read = admin = feedback = infer_all = False
        models: set[str] = set()
        for scope in scopes:
            if scope == "read":
                read = True
            elif scope == "admin":
                admin = True
            elif scope == "feedback":
                feedback = True
            elif scope == "infer":
                infer_all = True
            elif scope.startswith("infer:") and valid_model_name(scope[6:]):
                models.add(scope[6:])
            else:
                raise ValueError(f"token '{name}': unknown scope '{scope}'")
        return cls(name, read, admin, feedback, infer_all, frozenset(models))

    def may_infer(self, model: str) -> bool:
        return self.infer_all or model in self.infer_models

    def allows(self, action: Action, model: str = "") -> bool:
        if action is Action.PUBLIC or action is Action.METADATA:
            return True
        if action is Action.READ:
            return self.read
        if action is Action.MODEL_READ:
            return self.read or self.may_infer(model)
        if action is Action.INFER:
            return self.may_infer(model)
        if action is Action.FEEDBACK:
            return self.feedback or self.admin
        return self.admin


def _needed(action: Action, model: str) -> str:
    if action is Action.INFER:
        return f"inference on model '{model}' needs scope 'infer' or 'infer:{model}'"
    if action is Action.MODEL_READ:
        return f"reading model '{model}' needs scope 'read', 'infer' or 'infer:{model}'"
    if action is Action.READ:
        return "this call needs scope 'read'"
    if action is Action.FEEDBACK:
        return "sending labels needs scope 'feedback' (or 'admin')"
    return "this call needs scope 'admin'"


def hash_token(token: str) -> str:
    """The SHA-256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` value; Unauthenticated otherwise."""
    if not authorization:
        raise Unauthenticated(
            "authentication required: send the header 'Authorization: Bearer <token>'"
        )
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("the authorization must be 'Bearer <token>'")
    return token


@dataclass(frozen=True, slots=True)
class _Credential:
    digest: bytes
    principal: Principal


class Authenticator:
    """Decides every request: ``check(authorization, action, model)`` returns the principal
    (None for an open PUBLIC action) or raises Unauthenticated (401) / PermissionDenied (403)."""

    def __init__(self, tokens: Sequence[TokenConfig], protect_public: bool = False) -> None:
        if not tokens:
            raise ValueError("an Authenticator needs at least one token")
        self.protect_public = protect_public
        credentials: list[_Credential] = []
        for token in tokens:
            principal = Principal.from_scopes(token.name, token.scopes)
            credentials.append(_Credential(bytes.fromhex(token.token_sha256), principal))
        _check_unique(tokens)
        self._credentials = tuple(credentials)

    @property
    def principals(self) -> list[Principal]:
        return [c.principal for c in self._credentials]

    def authenticate(self, authorization: str | None) -> Principal:
        digest = hashlib.sha256(bearer_token(authorization).encode("utf-8")).digest()
        found: Principal | None = None
        for credential in self._credentials:  # no early exit: same time whichever matches
            if hmac.compare_digest(digest, credential.digest):
                found = credential.principal
        if found is None:
            raise Unauthenticated("invalid token")
        return found

    def check(self, authorization: str | None, action: Action, model: str = "") -> Principal | None:
        if action is Action.PUBLIC and not self.protect_public:
            return None
        principal = self.authenticate(authorization)
        self.authorize(principal, action, model)
        return principal

    @staticmethod
    def authorize(principal: Principal, action: Action, model: str = "") -> None:
        """PermissionDenied unless the principal's scopes allow ``action`` on ``model``."""
        if not principal.allows(action, model):
            log.info("denied %s for token '%s'", action.value, principal.name)
            raise PermissionDenied(
                f"token '{principal.name}' is not allowed: {_needed(action, model)}"
            )


def _check_unique(tokens: Sequence[TokenConfig]) -> None:
    names = [t.name for t in tokens]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"token names given more than once: {', '.join(twice)}")
    digests = [t.token_sha256 for t in tokens]
    if len(set(digests)) != len(digests):
        same = sorted({t.name for t in tokens if digests.count(t.token_sha256) > 1})
        raise ValueError(f"tokens {', '.join(same)} are the same token")


# ---- where tokens come from ------------------------------------------------------------------


def _token_config(name: str, token: str | None, digest: str | None, scopes: Any) -> TokenConfig:
    if (token is None) == (digest is None):
        raise ValueError(f"token '{name}': give exactly one of 'token' and 'token_sha256'")
    if token is not None:
        if not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"token '{name}' is shorter than {MIN_TOKEN_LENGTH} characters; "
                "make one with `modelserve token`"
            )
        digest = hash_token(token)
    assert digest is not None
    if isinstance(scopes, str):
        scopes = [s.strip() for s in scopes.split(",") if s.strip()]
    try:
        config = TokenConfig(name=name, token_sha256=digest, scopes=scopes)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'token'}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(f"token '{name}': {problems}") from None
    Principal.from_scopes(config.name, config.scopes)  # refuses unknown scopes now
    return config


def load_token_file(path: Path) -> list[TokenConfig]:
    """Read an auth file: a YAML list (or ``{tokens: [...]}``) of ``{name, token | token_sha256,
    scopes}``. Raises ValueError naming the file and the entry (never the token)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the auth file: {type(exc).__name__}") from None
    if isinstance(data, dict) and set(data) == {"tokens"}:
        data = data["tokens"]
    if not isinstance(data, list) or not data:
        raise ValueError(f"{path}: expected a non-empty list of tokens")
    tokens: list[TokenConfig] = []
    plain = False
    for position, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValueError(f"{path}: entry {position} needs a 'name' string")
        extra = set(item) - {"name", "token", "token_sha256", "scopes"}
        if extra:
            raise ValueError(f"{path}: token '{item['name']}': unknown keys {sorted(extra)}")
        plain = plain or "token" in item
        try:
            tokens.append(
                _token_config(
                    item["name"], item.get("token"), item.get("token_sha256"), item.get("scopes")
                )
            )
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    if plain and os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "%s holds plain-text tokens and other users may read it; chmod 600 it, or store "
            "token_sha256 instead",
            path,
        )
    return tokens


def tokens_from_env(environ: Mapping[str, str]) -> list[TokenConfig]:
    """Tokens from ``MODELSERVE_TOKEN_<NAME>=<token>:<scope>,<scope>`` variables (the name is
    lower-cased; the token may not contain ':')."""
    tokens: list[TokenConfig] = []
    for key in sorted(environ):
        if not key.startswith(ENV_PREFIX) or len(key) == len(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        token, sep, scopes = environ[key].partition(":")
        if not sep or not scopes.strip():
            raise ValueError(f"{key}: expected '<token>:<scope>[,<scope>...]'")
        tokens.append(_token_config(name, token, None, scopes))
    return tokens


def exposure_warning(host: str, auth_enabled: bool, control_mode: str) -> str | None:
    """The start-up warning for a server reachable beyond this machine without authentication."""
    if auth_enabled or _is_loopback(host):
        return None
    message = (
        f"listening on {host} without authentication: anyone who can reach this address may "
        "call every endpoint; set --auth-file or MODELSERVE_TOKEN_<NAME> (docs/security.md)"
    )
    if control_mode == "explicit":
        message += "; the repository load/unload API is open to them too"
    return message


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
