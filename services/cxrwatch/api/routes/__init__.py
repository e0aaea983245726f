"""One router per resource: alerts, patients, audit, stream, auth, health, board."""

from datetime import datetime
from typing import Annotated, Any

from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, BeforeValidator

from cxrwatch.api.schemas import Problem

AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing or invalid credentials."},
    403: {"model": Problem, "description": "The principal's role does not allow it."},
    429: {"model": Problem, "description": "Rate limit reached; see Retry-After."},
    503: {"model": Problem, "description": "Redis does not answer."},
}


def _iso_8601(value: object) -> object:
    # Pydantic would also read "0.5" as seconds since 1970; the API takes ISO 8601.
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"{value[:40]!r} is not an ISO 8601 time") from exc
    return value


IsoTime = Annotated[AwareDatetime, BeforeValidator(_iso_8601)]
"""A query time: ISO 8601 with a UTC offset, e.g. ``2026-03-14T08:00:00Z``."""


def invalid_query(name: str, message: str) -> RequestValidationError:
    """A 422 for query parameter ``name``, shaped like FastAPI's own."""
    return RequestValidationError(
        [{"type": "value_error", "loc": ("query", name), "msg": message}]
    )


def checked_range(since: datetime | None, until: datetime | None) -> None:
    """Refuse a time range that ends before it starts."""
    if since and until and since > until:
        raise invalid_query(
            "until",
            f"until ({until.isoformat()}) is before since ({since.isoformat()})",
        )
