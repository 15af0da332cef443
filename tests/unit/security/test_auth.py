"""Tokens and scopes, pure logic: who may do what, token files and variables, never a token in
a message or a log line."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import yaml

from modelserve.config.settings import TokenConfig
from modelserve.errors import PermissionDenied, Unauthenticated
from modelserve.security.auth import (
    Action,
    Authenticator,
    Principal,
    bearer_token,
    exposure_warning,
    hash_token,
    load_token_file,
    tokens_from_env,
)

TOKEN = "a-long-enough-token-0123456789"


def config(name: str, token: str, *scopes: str) -> TokenConfig:
    return TokenConfig(name=name, token_sha256=hash_token(token), scopes=scopes)


def test_scopes_grant_exactly_their_actions() -> None:
    iris = Principal.from_scopes("iris", ["infer:iris", "infer:other"])
    assert iris.allows(Action.INFER, "iris") and iris.allows(Action.INFER, "other")
    assert not iris.allows(Action.INFER, "mlp")
    assert iris.allows(Action.MODEL_READ, "iris") and not iris.allows(Action.MODEL_READ, "mlp")
    assert not iris.allows(Action.READ) and not iris.allows(Action.ADMIN)
    assert iris.allows(Action.METADATA) and iris.allows(Action.PUBLIC)
    reader = Principal.from_scopes("reader", ["read"])
    assert reader.allows(Action.READ) and reader.allows(Action.MODEL_READ, "any")
    assert not reader.allows(Action.INFER, "any") and not reader.allows(Action.ADMIN)
    admin = Principal.from_scopes("admin", ["admin"])
    assert admin.allows(Action.ADMIN)
    assert not admin.allows(Action.INFER, "x") and not admin.allows(Action.READ)
    everything = Principal.from_scopes("all", ["infer"])
    assert everything.allows(Action.INFER, "anything")
    assert not everything.allows(Action.FEEDBACK, "anything")
    assert not reader.allows(Action.FEEDBACK, "any") and admin.allows(Action.FEEDBACK, "any")
    feedback = Principal.from_scopes("labeller", ["feedback"])
    assert feedback.allows(Action.FEEDBACK, "iris")
    assert not feedback.allows(Action.INFER, "iris") and not feedback.allows(Action.READ)
    assert not feedback.allows(Action.MODEL_READ, "iris") and not feedback.allows(Action.ADMIN)
    with pytest.raises(ValueError, match="unknown scope"):
        Principal.from_scopes("x", ["write"])
    with pytest.raises(ValueError, match="unknown scope"):
        Principal.from_scopes("x", ["infer:../etc"])


def test_authenticator_decides() -> None:
    auth = Authenticator([config("iris", TOKEN, "infer:iris"), config("ops", TOKEN + "x", "admin")])
    assert auth.check(None, Action.PUBLIC) is None  # probes stay open
    principal = auth.check(f"Bearer {TOKEN}", Action.INFER, "iris")
    assert principal is not None and principal.name == "iris"
    with pytest.raises(Unauthenticated):
        auth.check(None, Action.INFER, "iris")
    with pytest.raises(Unauthenticated):
        auth.check(f"Bearer {TOKEN}-wrong", Action.INFER, "iris")
    with pytest.raises(PermissionDenied, match="infer:mlp"):
        auth.check(f"Bearer {TOKEN}", Action.INFER, "mlp")
    with pytest.raises(PermissionDenied, match="admin"):
        auth.check(f"Bearer {TOKEN}", Action.ADMIN)
    assert auth.check(f"Bearer {TOKEN}x", Action.ADMIN) is not None
    protected = Authenticator([config("iris", TOKEN, "infer:iris")], protect_public=True)
    with pytest.raises(Unauthenticated):
        protected.check(None, Action.PUBLIC)
    assert protected.check(f"Bearer {TOKEN}", Action.PUBLIC) is not None


@pytest.mark.parametrize(
    "value", [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwdw==", "Token abc", TOKEN]
)
def test_malformed_authorization_is_unauthenticated(value: str | None) -> None:
    with pytest.raises(Unauthenticated) as info:
        bearer_token(value)
    assert TOKEN not in info.value.message


def test_bearer_scheme_is_case_insensitive() -> None:
    assert bearer_token(f"bearer {TOKEN}") == TOKEN
    assert bearer_token(f"  BEARER   {TOKEN}  ") == TOKEN


def test_duplicate_tokens_and_names_are_refused() -> None:
    with pytest.raises(ValueError, match="same token"):
        Authenticator([config("a", TOKEN, "read"), config("b", TOKEN, "admin")])
    with pytest.raises(ValueError, match="more than once"):
        Authenticator([config("a", TOKEN, "read"), config("a", TOKEN + "2", "admin")])
    with pytest.raises(ValueError):
        Authenticator([])


def test_token_config_keeps_no_plain_token() -> None:
    entry = config("ci", TOKEN, "read")
    assert TOKEN not in repr(entry) and TOKEN not in entry.model_dump_json()


def test_token_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "tokens.yaml"
    entries = [
        {"name": "ci", "token_sha256": hash_token(TOKEN), "scopes": ["infer:iris", "read"]},
        {"name": "ops", "token": TOKEN + "-ops", "scopes": "admin, read"},
    ]
    path.write_text(yaml.safe_dump(entries))
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING):
        tokens = load_token_file(path)
    assert not caplog.records
    assert [t.name for t in tokens] == ["ci", "ops"]
    assert tokens[1].token_sha256 == hash_token(TOKEN + "-ops")
    assert tokens[1].scopes == ("admin", "read")
    path.write_text(yaml.safe_dump({"tokens": entries}))
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        assert len(load_token_file(path)) == 2
    assert "chmod 600" in caplog.text and TOKEN not in caplog.text


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([], "non-empty list"),
        ({"ci": TOKEN}, "non-empty list"),
        ([{"token": TOKEN, "scopes": ["read"]}], "'name'"),
        ([{"name": "ci", "token": "short", "scopes": ["read"]}], "shorter than"),
        ([{"name": "ci", "scopes": ["read"]}], "exactly one of"),
        (
            [{"name": "ci", "token": TOKEN, "token_sha256": hash_token(TOKEN), "scopes": ["read"]}],
            "exactly one of",
        ),
        ([{"name": "ci", "token": TOKEN, "scopes": ["write"]}], "unknown scope"),
        ([{"name": "ci", "token": TOKEN, "scopes": []}], "scopes"),
        ([{"name": "ci", "token_sha256": "abc", "scopes": ["read"]}], "token_sha256"),
        ([{"name": "ci", "token": TOKEN, "scopes": ["read"], "tokne": 1}], "unknown keys"),
    ],
)
def test_bad_token_files_name_the_problem_not_the_token(
    tmp_path: Path, entries: object, message: str
) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(yaml.safe_dump(entries))
    with pytest.raises(ValueError, match=message) as info:
        load_token_file(path)
    assert TOKEN not in str(info.value) and str(path) in str(info.value)


def test_tokens_from_env() -> None:
    environ = {
        "MODELSERVE_TOKEN_CI": f"{TOKEN}:infer:iris,read",
        "MODELSERVE_TOKEN_OPS": f"{TOKEN}-ops:admin",
        "MODELSERVE_HOST": "ignored",
        "PATH": os.defpath,
    }
    tokens = tokens_from_env(environ)
    assert [(t.name, t.scopes) for t in tokens] == [
        ("ci", ("infer:iris", "read")),
        ("ops", ("admin",)),
    ]
    assert tokens[0].token_sha256 == hash_token(TOKEN)
    for bad in (TOKEN, f"{TOKEN}:", "short:read", f"{TOKEN}:write"):
        with pytest.raises(ValueError) as info:
            tokens_from_env({"MODELSERVE_TOKEN_X": bad})
        assert TOKEN not in str(info.value)


def test_exposure_warning() -> None:
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert exposure_warning(host, auth_enabled=False, control_mode="explicit") is None
    warning = exposure_warning("0.0.0.0", auth_enabled=False, control_mode="none")
    assert warning is not None and "without authentication" in warning
    assert "load/unload" not in warning
    warning = exposure_warning("::", auth_enabled=False, control_mode="explicit")
    assert warning is not None and "load/unload" in warning
    assert exposure_warning("example.org", auth_enabled=False, control_mode="none") is not None
    assert exposure_warning("0.0.0.0", auth_enabled=True, control_mode="explicit") is None
