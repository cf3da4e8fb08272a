"""``/docs``: the browsable API documentation (Swagger UI), served from this gateway alone.

FastAPI's own ``/docs`` page loads Swagger UI from a CDN (cdn.jsdelivr.net): on the closed networks where
gateways are installed, that page stayed blank while ``/openapi.json`` worked. Swagger UI's files come
here from the ``fastapi-offline`` package, which ships Swagger UI 5 (our document is OpenAPI 3.1, which
Swagger UI 4, as in PyPI's ``swagger-ui-bundle``, cannot render); only its files are used, the app stays
ours.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse

DOCS_PATH = "/docs"
ASSETS_PATH = f"{DOCS_PATH}/assets"
ASSETS = files("fastapi_offline") / "static"


def mount_docs(app: FastAPI) -> None:
    """Add ``/docs`` and its files under ``/docs/assets`` to ``app`` (created with ``docs_url=None``)."""
    app.mount(ASSETS_PATH, StaticFiles(directory=str(ASSETS)), name="docs-assets")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        # Behind a proxy serving the gateway under a path (``--root-path /passerelle``), the page's addresses
        # carry it: from the root, the page loaded no script and no document, and stayed blank.
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(openapi_url=f"{root}{app.openapi_url}",
                                   title=f"{app.title} : documentation de l'API",
                                   swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
                                   swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png")
