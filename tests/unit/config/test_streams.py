"""``--stream-source`` URLs: what is accepted, and errors that say what is wrong."""

from __future__ import annotations

import pytest

from modelserve.config.streams import parse_stream_source


def test_redis_url_with_db_and_model() -> None:
    config = parse_stream_source("redis://:secret@127.0.0.1:6390/2/requests?model=iris&version=1")
    assert config.kind == "redis" and config.connection == "redis://:secret@127.0.0.1:6390/2"
    assert (config.stream, config.model, config.version) == ("requests", "iris", "1")
    assert config.group_for("iris") == "modelserve-iris" and config.in_flight == 32
    assert config.responses == "requests.responses" and config.errors == "requests.errors"
    assert "secret" not in config.text


def test_redis_url_without_db_uses_db_zero() -> None:
    config = parse_stream_source("redis://localhost/modelserve:iris?group=g&in_flight=4")
    assert config.connection == "redis://localhost/0" and config.stream == "modelserve:iris"
    assert config.group_for("iris") == "g" and config.in_flight == 4 and config.model is None


def test_kafka_url_with_several_brokers() -> None:
    config = parse_stream_source("kafka://k1:9092,k2:9092/inference.requests?model=mlp")
    assert config.kind == "kafka" and config.connection == "k1:9092,k2:9092"
    assert config.stream == "inference.requests" and config.model == "mlp"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://x/y", "a stream source is"),
        ("redis://host:6379/0/", "no stream"),
        ("redis://host/s?modle=iris", "unknown key(s) modle"),
        ("redis://host/s?in_flight=0", "'in_flight' must be at least 1"),
        ("redis://host/s?in_flight=many", "'in_flight' must be a number"),
        ("kafka://host:9092/bad topic", "Kafka topic name"),
        ("redis:///s", "no host"),
    ],
)
def test_invalid_urls_say_why(url: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_stream_source(url)
    assert message in str(caught.value)
