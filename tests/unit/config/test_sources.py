"""Where settings come from: flags win over the environment, which wins over the server file,
which wins over the default; a bad value names its source."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from modelserve.cli.main import build_parser
from modelserve.cli.options import given_settings
from modelserve.config.settings import Settings
from modelserve.config.sources import SettingsError, build_settings, read_server_file


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *argv])


def test_defaults_come_from_the_field(tmp_path: Path) -> None:
    settings = build_settings(given_settings(parse(str(tmp_path))), env={})
    assert settings == Settings(model_repository=tmp_path)
    assert settings.http_port == 8000 and settings.drain_delay_s == 0.0


def test_flag_beats_env_beats_file_beats_default(tmp_path: Path) -> None:
    server_file = tmp_path / "server.yaml"
    server_file.write_text(
        "model_repository: models\nhttp_port: 9100\ngrpc_port: 9101\n"
        "drain_delay_secs: 2.5\nload_models: [a, b]\naccess_log: true\n"
    )
    env = {"MODELSERVE_GRPC_PORT": "9201", "MODELSERVE_METRICS_PORT": "9202"}
    flags = given_settings(parse("--metrics-port", "9302", "--no-access-log"))
    settings = build_settings(flags, env=env, config_file=server_file)
    assert settings.model_repository == tmp_path / "models"  # relative to the file
    assert settings.http_port == 9100  # file
    assert settings.grpc_port == 9201  # env over file
    assert settings.metrics_port == 9302  # flag over env
    assert settings.access_log is False  # flag over file
    assert settings.drain_delay_s == 2.5
    assert settings.load_models == ("a", "b")


def test_environment_values_are_converted(tmp_path: Path) -> None:
    env = {
        "MODELSERVE_MODEL_REPOSITORY": str(tmp_path),
        "MODELSERVE_LOAD_MODELS": "x, y",
        "MODELSERVE_MODEL_CONTROL_MODE": "explicit",
        "MODELSERVE_AUTH_HEALTH": "true",
        "MODELSERVE_SHUTDOWN_TIMEOUT_SECS": "4.5",
        "MODELSERVE_METRICS_PORT": "",
    }
    settings = build_settings({}, env=env)
    assert settings.load_models == ("x", "y") and settings.startup_models == ("x", "y")
    assert settings.auth_health is True and settings.shutdown_timeout_s == 4.5
    assert settings.metrics_port is None


def test_repeatable_flags_collect(tmp_path: Path) -> None:
    flags = given_settings(
        parse(str(tmp_path), "--model-control-mode", "explicit", "--load-model", "a",
              "--load-model", "b")
    )  # fmt: skip
    settings = build_settings(flags, env={})
    assert settings.startup_models == ("a", "b")
    star = build_settings({**flags, "load_models": ("*",)}, env={})
    assert star.startup_models is None


@pytest.mark.parametrize(
    ("flags", "env", "file_text", "message"),
    [
        ({"http_port": "http"}, {}, None, "--http-port: "),
        ({}, {"MODELSERVE_HTTP_PORT": "99999"}, None, "MODELSERVE_HTTP_PORT: "),
        ({}, {}, "http_port: -1\n", "http_port in "),
        ({}, {}, "no_such_key: 1\n", "unknown setting(s) no_such_key"),
        ({}, {}, "- a\n", "expected a mapping"),
        ({}, {}, "a: [\n", "not valid YAML"),
        ({"workers": "2", "model_control_mode": "explicit"}, {}, None, "explicit"),
    ],
)
def test_bad_values_name_their_source(
    tmp_path: Path, flags: dict[str, str], env: dict[str, str], file_text: str | None, message: str
) -> None:
    server_file = None
    if file_text is not None:
        server_file = tmp_path / "server.yaml"
        server_file.write_text(file_text)
    with pytest.raises(SettingsError) as info:
        build_settings(
            {"model_repository": str(tmp_path), **flags}, env=env, config_file=server_file
        )
    assert message in str(info.value)


def test_a_repository_is_required_somewhere() -> None:
    with pytest.raises(SettingsError, match="no model repository"):
        build_settings({}, env={})


def test_missing_server_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read the server file"):
        read_server_file(tmp_path / "absent.yaml")
