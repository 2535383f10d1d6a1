"""The web console: static files from gateway/console/, served at `/` and `/console/<name>`.

The pages are public, like /healthz: they hold no data, and every API call the console
makes carries the user's token in `Authorization`. The token never travels in a page
URL: a `meeting-mesh dev` link keeps it in the fragment, which a browser does not send.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

CONSOLE_DIR = Path(__file__).parent / "console"
# The files a request may name: fixed at start, so no request path reaches the disk.
_FILES = {path.name: path for path in CONSOLE_DIR.iterdir() if path.is_file()}
# The console runs only its own scripts and talks only to this origin (WebSocket included),
# so injected markup could neither run nor send a token elsewhere.
_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
CONSOLE_ROUTES = frozenset({"console", "console_file"})


async def _index(_request: web.Request) -> web.StreamResponse:
    return web.FileResponse(_FILES["index.html"], headers=_HEADERS)


async def _file(request: web.Request) -> web.StreamResponse:
    path = _FILES.get(request.match_info["name"])
    if path is None:
        raise web.HTTPNotFound(reason="no such console file")
    return web.FileResponse(path, headers=_HEADERS)


def add_console_routes(app: web.Application) -> None:
    """Adds `GET /` (the console page) and `GET /console/{name}` (its scripts and styles).

    Args:
        app: The gateway application.
    """
    app.router.add_route("GET", "/", _index, name="console")
    app.router.add_route("GET", "/console/{name}", _file, name="console_file")


def console_operations() -> dict[str, dict[str, Any]]:
    """The OpenAPI path items of the console's routes.

    Returns:
        Path items by path template.
    """

    def page(operation_id: str, summary: str, media: str) -> dict[str, Any]:
        return {
            "operationId": operation_id,
            "summary": summary,
            "security": [],
            "responses": {
                "200": {"description": summary, "content": {media: {"schema": {"type": "string"}}}}
            },
        }

    files = page("ConsoleFile", "A script, style sheet or worklet of the console.", "text/plain")
    files["parameters"] = [
        {
            "name": "name",
            "in": "path",
            "required": True,
            "description": "The file's name, e.g. `app.js`.",
            "schema": {"type": "string"},
        }
    ]
    files["responses"]["404"] = {
        "description": "No such file.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    return {
        "/": {"get": page("Console", "The web console (sign in with a token).", "text/html")},
        "/console/{name}": {"get": files},
    }
