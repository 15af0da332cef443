"""Request ids: a usable client id is kept, a bad one replaced, and the context ends cleanly."""

from __future__ import annotations

from modelserve.observability import Observability
from modelserve.observability.context import CURRENT, usable_id


def test_request_ids() -> None:
    assert usable_id("abc-123") and usable_id("x" * 128)
    for bad in (None, "", "x" * 129, "a\r\nb", "caf\u00e9", "tab\there"):
        assert not usable_id(bad)
    observability = Observability(process_metrics=False)
    ctx = observability.begin("http", "GET", "/", None)
    ctx.adopt_id("v2")
    assert ctx.request_id == "v2"
    observability.end(ctx, 200)
    given = observability.begin("http", "GET", "/", "given")
    given.adopt_id("v2")
    assert given.request_id == "given"
    observability.end(given, 200)
    made = observability.begin("http", "GET", "/", "bad\nid")
    assert len(made.request_id) == 32 and made.request_id != "bad\nid"
    made.adopt_id("too late")
    assert made.request_id != "too late"
    observability.end(made, 200)
    assert CURRENT.get() is None
