"""Stream sources as configured: ``--stream-source`` URLs (docs/payload-logging.md, "Inference
from a stream").

    redis://[user:password@]host:port[/db]/<stream>[?model=iris&version=1&group=...]
    rediss://...                                     (Redis over TLS)
    kafka://host:port[,host:port...]/<topic>[?model=iris&version=1&group=...]

Query keys: ``model`` (the model the requests are for; may be left out when the server serves
one model), ``version``, ``group`` (the consumer group, default ``modelserve-<model>``),
``in_flight`` (requests being served at once, default 32), ``maxlen`` (Redis: trim the
response and error streams to about this many entries, default 100000; 0 = never) and
``claim_idle_s`` (Redis: entries another consumer took and left unacknowledged this long are
taken over, default 60).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

__all__ = ["DEFAULT_IN_FLIGHT", "StreamSourceConfig", "parse_stream_source"]

DEFAULT_IN_FLIGHT = 32
SCHEMES = ("redis", "rediss", "kafka")
QUERY_KEYS = frozenset({"model", "version", "group", "in_flight", "maxlen", "claim_idle_s"})
KAFKA_TOPIC = re.compile(r"^[A-Za-z0-9._\-]{1,240}$")


@dataclass(frozen=True, slots=True)
class StreamSourceConfig:
    scheme: str
    """``redis``, ``rediss`` or ``kafka``."""
    connection: str
    """Redis: the client URL (``redis://host:port/db``); Kafka: the bootstrap servers."""
    stream: str
    """The stream (Redis) or topic (Kafka) requests are read from."""
    model: str | None
    version: str = ""
    group: str | None = None
    in_flight: int = DEFAULT_IN_FLIGHT
    maxlen: int | None = 100_000
    claim_idle_s: float = 60.0
    text: str = ""
    """The URL without credentials (for logs)."""

    @property
    def kind(self) -> str:
        return "kafka" if self.scheme == "kafka" else "redis"

    def group_for(self, model: str) -> str:
        return self.group or f"modelserve-{model}"

    @property
    def responses(self) -> str:
        return f"{self.stream}.responses"

    @property
    def errors(self) -> str:
        return f"{self.stream}.errors"


def _one(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    if not values:
        return None
    if len(values) > 1:
        raise ValueError(f"'{key}' is given more than once")
    return values[0]


def _number(query: dict[str, list[str]], key: str, default: float, low: float) -> float:
    value = _one(query, key)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"'{key}' must be a number, got '{value}'") from None
    if number < low:
        raise ValueError(f"'{key}' must be at least {low:g}, got {value}")
    return number


def parse_stream_source(value: str) -> StreamSourceConfig:
    """A ``--stream-source`` URL; ValueError with the reason for one that is not valid."""
    parts = urlsplit(value)
    if parts.scheme not in SCHEMES:
        raise ValueError(
            f"'{value}': a stream source is redis://host:port/db/<stream> or "
            "kafka://host:port/<topic>"
        )
    if not parts.netloc or not parts.hostname:
        raise ValueError(f"'{value}': no host")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - QUERY_KEYS)
    if unknown:
        raise ValueError(f"'{value}': unknown key(s) {', '.join(unknown)}")
    path = parts.path.strip("/")
    host = parts.netloc.rpartition("@")[2]
    if parts.scheme == "kafka":
        if not KAFKA_TOPIC.match(path):
            raise ValueError(f"'{value}': the path must be a Kafka topic name")
        connection, stream = host, path
    else:
        db, _, stream = path.partition("/")
        if not db.isdigit():
            db, stream = "0", path
        if not stream:
            raise ValueError(f"'{value}': no stream (redis://host:port/db/<stream>)")
        connection = f"{parts.scheme}://{parts.netloc}/{db}"
        try:
            parts.port  # noqa: B018 - checks the port
        except ValueError as exc:
            raise ValueError(f"'{value}': {exc}") from None
    maxlen = int(_number(query, "maxlen", 100_000, 0))
    return StreamSourceConfig(
        scheme=parts.scheme,
        connection=connection,
        stream=stream,
        model=_one(query, "model") or None,
        version=_one(query, "version") or "",
        group=_one(query, "group") or None,
        in_flight=int(_number(query, "in_flight", DEFAULT_IN_FLIGHT, 1)),
        maxlen=maxlen or None,
        claim_idle_s=_number(query, "claim_idle_s", 60.0, 0.0),
        text=f"{parts.scheme}://{host}/{path}",
    )
