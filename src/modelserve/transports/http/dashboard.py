"""``Dashboard``: the ``/ui`` routes of the HTTP port (``--ui``; docs/dashboard.md).

- ``GET /ui``: the overview; ``GET /ui/models/{m}``: a model's page (dashboard_pages.py).
- ``GET /ui/api/summary``, ``GET /ui/api/models/{m}`` (15 min at 1 s) and
  ``GET /ui/api/models/{m}/minutes`` (24 h at 1 min): the JSON the pages poll, for scripts too.
- ``POST /ui/models/{m}/load|unload``: the page's buttons (explicit model control mode), and
  ``POST /ui/models/{m}/experiment/promote|rollback|stop``: the experiment's, answered with a
  redirect back to the page (forms: they work without JavaScript).
- ``GET /ui/static/{file}``: the page's CSS, script and the vendored uPlot, from the package.

With authentication on, every ``/ui`` route needs the ``admin`` scope, like the repository API.
A browser cannot send a bearer token by itself, so the dashboard also takes the token as the
password of HTTP Basic authentication (any user name) and asks for it with
``WWW-Authenticate: Basic``; the browser then sends it with each request of the page. The buttons
are refused when the browser says the request comes from another site (``Sec-Fetch-Site``,
``Origin``), so that a page elsewhere cannot make a logged-in browser unload a model.
"""

from __future__ import annotations

import base64
import binascii
from importlib import resources
from urllib.parse import quote, urlsplit

from modelserve.dataplane import DataPlane
from modelserve.errors import (
    FailedPrecondition,
    MethodNotAllowed,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from modelserve.security.auth import Action, Authenticator
from modelserve.transports.http.dashboard_data import DashboardData
from modelserve.transports.http.dashboard_experiments import ACTIONS
from modelserve.transports.http.dashboard_pages import model_page, overview_page
from modelserve.transports.http.messages import HttpRequest, Reply, json_reply

__all__ = ["PREFIX", "Dashboard", "is_dashboard_path"]

PREFIX = "/ui"
HTML = b"text/html; charset=utf-8"
STATIC_TYPES = {
    "css": b"text/css; charset=utf-8",
    "js": b"text/javascript; charset=utf-8",
    "LICENSE": b"text/plain; charset=utf-8",
}
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' "
        b"'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
    ),
]


def is_dashboard_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def bearer_from_basic(authorization: str | None) -> str | None:
    """``Basic base64(user:token)`` as ``Bearer token``; anything else unchanged."""
    if not authorization:
        return authorization
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return authorization
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated("malformed Basic credentials") from None
    return f"Bearer {decoded.partition(':')[2]}"


class Dashboard:
    def __init__(
        self, data: DashboardData, dataplane: DataPlane, auth: Authenticator | None = None
    ) -> None:
        self.data = data
        self._control = dataplane
        self._auth = auth

    @staticmethod
    def owns(path: str) -> bool:
        """Whether ``path`` is one of the dashboard's (under ``/ui``)."""
        return is_dashboard_path(path)

    async def handle(self, request: HttpRequest) -> Reply:
        """Answer a ``/ui`` request; ServerError for the REST app to encode."""
        if self._auth is not None:
            try:
                authorization = bearer_from_basic(request.headers.get("authorization"))
                self._auth.check(authorization, Action.ADMIN)
            except Unauthenticated as exc:
                reply = json_reply({"error": exc.message}, 401)
                reply.headers.append((b"www-authenticate", b'Basic realm="modelserve"'))
                return reply
        reply = await self._route(request)
        reply.headers.extend(SECURITY_HEADERS)
        if not request.path.startswith(PREFIX + "/static/"):
            reply.headers.append((b"cache-control", b"no-store"))
        return reply

    async def _route(self, request: HttpRequest) -> Reply:
        parts = [p for p in request.path[len(PREFIX) :].split("/") if p]
        method = request.method
        if method == "POST" and len(parts) in (3, 4) and parts[0] == "models":
            await self._act(request, parts[1], parts[2:])
            location = f"{PREFIX}/models/{quote(parts[1], safe='')}".encode()
            return Reply(303, b"", [(b"location", location), (b"content-type", HTML)])
        if method not in ("GET", "HEAD"):
            raise MethodNotAllowed(f"method {method} is not allowed here; use GET")
        if not parts:
            return Reply(200, overview_page(self.data.summary()), [(b"content-type", HTML)])
        if parts[0] == "static" and len(parts) == 2:
            return _static(parts[1])
        if parts[0] == "models" and len(parts) == 2:
            doc = await self.data.model(parts[1])
            explicit = self.data.control_mode == "explicit"
            return Reply(200, model_page(doc, explicit), [(b"content-type", HTML)])
        if parts[0] == "api":
            if parts[1:] == ["summary"]:
                return json_reply(self.data.summary())
            if len(parts) == 3 and parts[1] == "models":
                return json_reply(await self.data.model(parts[2]))
            if len(parts) == 4 and parts[1] == "models" and parts[3] == "minutes":
                return json_reply(await self.data.model(parts[2], "minute"))
        raise NotFound(f"no route for {request.path}")

    async def _act(self, request: HttpRequest, model: str, action: list[str]) -> None:
        """A button: load or unload the model, or promote, roll back or stop its experiment."""
        experiments = self.data.experiments
        if action in (["load"], ["unload"]):
            self._check_same_site(request)
            if action == ["load"]:
                await self._control.load_model(model, None)
            else:
                await self._control.unload_model(model)
        elif len(action) == 2 and action[0] == "experiment" and action[1] in ACTIONS:
            self._check_same_site(request)
            if experiments is None:
                raise FailedPrecondition("this server runs no traffic experiments")
            await experiments.act(model, action[1])
        else:
            raise NotFound(f"no route for {request.path}")

    @staticmethod
    def _check_same_site(request: HttpRequest) -> None:
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            raise PermissionDenied("dashboard actions are refused from another site")
        origin = request.headers.get("origin")
        if origin and origin != "null":
            host = request.headers.get("host", "")
            if urlsplit(origin).netloc != host:
                raise PermissionDenied("dashboard actions are refused from another origin")


def _static(name: str) -> Reply:
    kind = name.rsplit(".", 1)[-1]
    content_type = STATIC_TYPES.get(kind)
    if content_type is None or "/" in name or name.startswith("."):
        raise NotFound(f"no static file {name}")
    try:
        body = resources.files(__package__).joinpath("static", name).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise NotFound(f"no static file {name}") from None
    return Reply(200, body, [(b"content-type", content_type), (b"cache-control", b"max-age=3600")])
