"""Server-rendered web pages of the release service: sign in, my queue, release, history,
account, web upload, the terminal kiosk (and the admin pages, ``web.admin``).

``router`` is mounted at ``/`` by ``cloud.app.create_app``; it is left out of the OpenAPI
schema. Pages render Jinja2 templates (``web/templates``) through ``layout.render``.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from pullprint.cloud.web import admin, kiosk, upload, user
from pullprint.cloud.web.layout import STATIC
from pullprint.errors import NotFound

router = APIRouter(include_in_schema=False)
router.include_router(user.router)
router.include_router(upload.router)
router.include_router(kiosk.router)
router.include_router(admin.router)  # /admin (web.admin)

_STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}


@router.get("/static/{name}")
async def static(name: str) -> FileResponse:
    """A file of ``web/static`` (only plain names there, no subfolders)."""
    path = STATIC / name
    kind = _STATIC_TYPES.get(path.suffix)
    if "/" in name or name.startswith(".") or kind is None or not path.is_file():
        raise NotFound(404, f"no static file {name}")
    return FileResponse(path, media_type=kind, headers={"Cache-Control": "public, max-age=3600"})
