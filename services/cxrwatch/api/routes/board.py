"""The alert board: static pages under ``/board/``, ``/`` redirects there.

The pages (plain HTML, CSS and JavaScript, no build step) hold no data and
need no credentials; everything they show comes from the authenticated API.
The patient view takes the patient key from the URL fragment
(``/board/patient.html#<key>``), which browsers never send to the server.
"""

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def root() -> RedirectResponse:
    """Send a browser to the board."""
    return RedirectResponse("/board/", status_code=307)


def mount_static(app: FastAPI) -> None:
    """Serve the page files under ``/board/``."""
    app.mount("/board", StaticFiles(directory=STATIC, html=True), name="board")
