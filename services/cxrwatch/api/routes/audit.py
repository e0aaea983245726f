"""The audit trail of acknowledgements and resolutions, for admins.

Entries are appended by the alert store in the same script that changes an
alert's status. The API offers no way to change or delete them: this router
has only ``GET``.
"""

import re
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from cxrwatch.api.dependencies import Admin, Store
from cxrwatch.api.routes import AUTH_ERRORS, invalid_query

router = APIRouter(tags=["audit"], responses=AUTH_ERRORS)

_ENTRY_ID = re.compile(r"\d{1,20}-\d{1,20}")


class AuditEntry(BaseModel):
    """One change of an alert's status."""

    entry_id: str = Field(description="Audit stream entry id; orders the trail.")
    alert_id: str
    action: str = Field(description="The status set: acknowledged or resolved.")
    actor: str
    at: datetime
    note: str | None = None


class AuditPage(BaseModel):
    """Audit entries, newest first."""

    items: list[AuditEntry]
    next_cursor: str | None = Field(
        description="Pass as ``before`` for older entries; null at the start."
    )


@router.get("/audit", response_model=AuditPage, summary="The audit trail")
async def get_audit(
    _: Admin,
    store: Store,
    before: Annotated[
        str | None, Query(max_length=41, description="next_cursor of a page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditPage:
    """Acknowledgements and resolutions with who, when and the note."""
    if before is not None and not _ENTRY_ID.fullmatch(before):
        raise invalid_query("before", f"{before!r} is not an audit entry id")
    rows = await store.audit_entries(before, limit + 1)
    items = [
        AuditEntry(
            entry_id=entry_id,
            alert_id=fields.get("alert_id", ""),
            action=fields.get("action", ""),
            actor=fields.get("actor", ""),
            at=datetime.fromisoformat(fields["at"]),
            note=fields.get("note") or None,
        )
        for entry_id, fields in rows[:limit]
    ]
    more = len(rows) > limit
    return AuditPage(items=items, next_cursor=items[-1].entry_id if more else None)
