"""The client commands' flags and variables: their own names, never the server's, each
documented in docs/cli.md, and a flag winning over its variable over its default."""

from __future__ import annotations

import argparse

import pytest

from modelserve.cli.client_options import CLIENT_FLAGS, value
from modelserve.cli.main import CommandError, build_parser
from modelserve.config.settings import option_specs
from tests.conftest import ROOT

CLI_DOC = (ROOT / "docs" / "cli.md").read_text()


def test_client_variables_are_not_the_servers() -> None:
    server = {spec.env for spec in option_specs()} | {"MODELSERVE_CONFIG"}
    names = [flag.env for flag in CLIENT_FLAGS.values()]
    assert len(set(names)) == len(names)
    assert not set(names) & server
    assert not [n for n in names if n.startswith("MODELSERVE_TOKEN_")], (
        "MODELSERVE_TOKEN_<NAME> defines the server's tokens"
    )


def test_every_flag_and_variable_is_documented() -> None:
    for flag in CLIENT_FLAGS.values():
        assert f"`{flag.flag}`" in CLI_DOC and f"`{flag.env}`" in CLI_DOC, flag.flag


def test_flag_then_variable_then_default() -> None:
    args = build_parser().parse_args(["predict", "m", "--timeout", "5"])
    assert value(args, "timeout", {"MODELSERVE_TIMEOUT": "9"}) == 5.0
    bare = build_parser().parse_args(["predict", "m"])
    assert value(bare, "timeout", {"MODELSERVE_TIMEOUT": "9"}) == 9.0
    assert value(bare, "timeout", {}) == 60.0
    assert value(bare, "grpc", {"MODELSERVE_GRPC": "yes"}) is True
    assert value(build_parser().parse_args(["predict", "m", "--grpc"]), "grpc", {}) is True


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("timeout", "-1", "MODELSERVE_TIMEOUT: '-1': must be more than 0"),
        ("retries", "many", "MODELSERVE_RETRIES: 'many': not a number"),
        ("grpc", "perhaps", "MODELSERVE_GRPC: 'perhaps': must be true or false"),
        ("output", "xml", "MODELSERVE_OUTPUT: 'xml' is not one of table, json, csv"),
    ],
)
def test_bad_variables_name_themselves(name: str, raw: str, message: str) -> None:
    with pytest.raises(CommandError, match=message.replace("(", r"\(")):
        value(argparse.Namespace(), name, {CLIENT_FLAGS[name].env: raw})
