"""Who am I, and a stream token for the browser's ``EventSource``."""

from datetime import datetime
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from cxrwatch.api.dependencies import Tokens, Viewer
from cxrwatch.api.routes import AUTH_ERRORS
from cxrwatch.api.settings import Role

router = APIRouter(prefix="/auth", tags=["auth"], responses=AUTH_ERRORS)


class Identity(BaseModel):
    """The authenticated caller."""

    name: str
    role: Role
    via: Literal["api-key", "oidc", "stream-token"]


class StreamToken(BaseModel):
    """A token for ``GET /alerts/stream?token=...``, good until ``expires_at``."""

    token: str
    expires_at: datetime


@router.get("/whoami", response_model=Identity, summary="The caller's name and role")
async def whoami(principal: Viewer) -> Identity:
    """Name and role of the credentials sent; the page checks a key with it."""
    return Identity(name=principal.name, role=principal.role, via=principal.via)


@router.post(
    "/stream-token", response_model=StreamToken, summary="A short-lived stream token"
)
async def stream_token(principal: Viewer, tokens: Tokens) -> StreamToken:
    """A signed token that opens the live stream, for clients that cannot send
    headers (a browser's EventSource). It works on no other endpoint."""
    token, expires_at = tokens.issue(principal)
    return StreamToken(token=token, expires_at=expires_at)
