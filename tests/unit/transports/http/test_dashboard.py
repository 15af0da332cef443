"""The dashboard's routes without a server: credentials, static files, the same-site rule."""

from __future__ import annotations

import base64

import pytest

from modelserve.errors import NotFound, PermissionDenied, Unauthenticated
from modelserve.transports.http.dashboard import (
    Dashboard,
    _static,
    bearer_from_basic,
    is_dashboard_path,
)
from modelserve.transports.http.dashboard_pages import model_page
from modelserve.transports.http.messages import HttpRequest


def test_the_token_is_taken_as_the_basic_password() -> None:
    basic = base64.b64encode(b"anyone:s3cret:with:colons").decode()
    assert bearer_from_basic(f"Basic {basic}") == "Bearer s3cret:with:colons"
    assert bearer_from_basic("Bearer abc") == "Bearer abc"
    assert bearer_from_basic(None) is None
    with pytest.raises(Unauthenticated):
        bearer_from_basic("Basic !!!not-base64")


def test_only_the_packaged_static_files_are_served() -> None:
    assert _static("uPlot.iife.min.js").body.startswith(b"/*")
    assert b"MIT" in _static("uPlot.LICENSE").body
    for name in ("../dashboard.py", ".hidden.js", "missing.js", "dashboard.py"):
        with pytest.raises(NotFound):
            _static(name)


def test_paths_under_ui_only() -> None:
    assert is_dashboard_path("/ui") and is_dashboard_path("/ui/api/summary")
    assert not is_dashboard_path("/uix") and not is_dashboard_path("/v2/ui")


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({}, False),
        ({"sec-fetch-site": "same-origin"}, False),
        ({"sec-fetch-site": "cross-site"}, True),
        ({"sec-fetch-site": "same-site"}, True),
        ({"origin": "http://127.0.0.1:8000", "host": "127.0.0.1:8000"}, False),
        ({"origin": "http://evil.example", "host": "127.0.0.1:8000"}, True),
    ],
)
def test_buttons_refuse_requests_from_another_site(headers: dict[str, str], refused: bool) -> None:
    request = HttpRequest("POST", "/ui/models/m/unload", headers, b"")
    if refused:
        with pytest.raises(PermissionDenied):
            Dashboard._check_same_site(request)
    else:
        Dashboard._check_same_site(request)


def test_a_model_name_cannot_close_the_page_script() -> None:
    doc = {"model": "</script><b>x", "versions": [], "config": None}
    html = model_page(doc, admin_buttons=True).decode()
    assert "</script><b>" not in html
    assert "&lt;/script&gt;&lt;b&gt;x" in html
