"""The ``logging:`` key of model.yaml and the ``payload_logging`` setting: what is accepted, and
errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelserve.config.model import load_model_config
from modelserve.config.sources import SettingsError, build_settings
from modelserve.errors import ModelLoadError


def _config(tmp_path: Path, text: str) -> object:
    (tmp_path / "model.yaml").write_text(text)
    return load_model_config(tmp_path).logging


def test_the_documented_example_parses(tmp_path: Path) -> None:
    logging = _config(
        tmp_path,
        "logging:\n"
        "  sample_rate: 0.25\n"
        "  mode: request\n"
        "  redact: [inputs.ssn, parameters.token, headers.Authorization]\n"
        "  headers: [X-User]\n"
        "  sinks:\n"
        "    - {type: file, path: payloads/iris.jsonl, rotate_mb: 100}\n",
    )
    assert logging is not None
    assert logging.sample_rate == 0.25 and logging.mode == "request"  # type: ignore[attr-defined]
    assert logging.headers == ["x-user"]  # type: ignore[attr-defined]
    [sink] = logging.sinks  # type: ignore[attr-defined]
    assert (sink.type, sink.path, sink.rotate_mb, sink.max_queue_events) == (
        "file",
        "payloads/iris.jsonl",
        100,
        10_000,
    )
    assert sink.max_queue_mb == 64


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("logging: {sample_rate: 1.5}\n", "logging.sample_rate"),
        ("logging: {mode: everything}\n", "logging.mode"),
        ("logging: {redact: [ssn]}\n", "use inputs.<tensor>"),
        ("logging: {sinks: [{type: carrier-pigeon}]}\n", "logging.sinks.0"),
        ("logging: {sinks: [{type: file}]}\n", "logging.sinks.0.file.path"),
        ("logging: {sinks: [{type: file, path: x, max_queue_events: 0}]}\n", "max_queue_events"),
        ("logging: {sinks: [{type: file, path: x, colour: red}]}\n", "colour"),
        ("logging: {sinks: [{type: cloudevents, url: 'ftp://x/'}]}\n", "cloudevents.url"),
        ("logging: {sinks: [{type: cloudevents, url: 'http://x/', content_mode: b}]}\n", "mode"),
        (
            "logging: {sinks: [{type: cloudevents, url: 'http://x/', headers: {'a b': c}}]}\n",
            "'a b'",
        ),
        ("logging: {sinks: [{type: kafka, bootstrap_servers: 'k:9092'}]}\n", "kafka.topic"),
        ("logging: {sinks: [{type: kafka, bootstrap_servers: k, topic: 'a b'}]}\n", "topic"),
        ("logging: {sinks: [{type: redis, url: 'http://r', stream: s}]}\n", "redis.url"),
        ("logging: {sinks: [{type: redis, url: 'redis://r', stream: s, maxlen: 0}]}\n", "maxlen"),
    ],
)
def test_mistakes_name_the_key(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ModelLoadError, match=r"model\.yaml") as caught:
        _config(tmp_path, text)
    assert fragment in str(caught.value)


def test_server_default_from_a_flag_the_environment_or_the_file(tmp_path: Path) -> None:
    inline = '{"sinks": [{"type": "file", "path": "a.jsonl"}]}'
    by_flag = build_settings({"model_repository": tmp_path, "payload_logging": inline}, env={})
    assert by_flag.payload_logging is not None
    assert by_flag.payload_logging.sinks[0].path == "a.jsonl"
    env = {"MODELSERVE_PAYLOAD_LOGGING": "{sample_rate: 0.1}", "MODELSERVE_LOG_DIR": "/var/log/m"}
    by_env = build_settings({"model_repository": tmp_path}, env=env)
    assert by_env.payload_logging is not None and by_env.payload_logging.sample_rate == 0.1
    assert by_env.log_dir == Path("/var/log/m")
    server_file = tmp_path / "server.yaml"
    server_file.write_text("payload_logging:\n  mode: response\n  sinks: [{type: file, path: b}]\n")
    by_file = build_settings({"model_repository": tmp_path}, env={}, config_file=server_file)
    assert by_file.payload_logging is not None and by_file.payload_logging.mode == "response"


def test_a_bad_server_default_names_its_source(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="--payload-logging"):
        build_settings({"model_repository": tmp_path, "payload_logging": "{mode: x}"}, env={})
    with pytest.raises(SettingsError, match="MODELSERVE_PAYLOAD_LOGGING"):
        build_settings({"model_repository": tmp_path}, env={"MODELSERVE_PAYLOAD_LOGGING": "[1"})


def test_every_sink_type_of_the_issue_parses(tmp_path: Path) -> None:
    logging = _config(
        tmp_path,
        "logging:\n"
        "  sinks:\n"
        "    - {type: cloudevents, url: 'http://collector:8080/'}\n"
        "    - {type: kafka, bootstrap_servers: 'kafka:9092', topic: modelserve.iris}\n"
        "    - {type: redis, url: 'redis://127.0.0.1:6379/0', stream: 'modelserve:iris',"
        " maxlen: 100000}\n",
    )
    ce, kafka, redis = logging.sinks  # type: ignore[attr-defined]
    assert (ce.content_mode, ce.component, ce.max_connections) == ("binary", "predictor", 16)
    assert (kafka.topic, kafka.acks) == ("modelserve.iris", "all")
    assert (redis.stream, redis.maxlen, redis.exact_maxlen) == ("modelserve:iris", 100000, False)
