"""The audit trail of unmasked PII: every ``--reveal`` leaves a row and a log line."""

from __future__ import annotations

import getpass
import os

from sqlalchemy.orm import Session

from db.models import AuditEvent
from idbatch.logging import get_logger

log = get_logger(__name__)


def actor() -> str:
    """Who is asking: ``IDBATCH_ACTOR`` (a service or SSO name) or the OS user."""
    return os.environ.get("IDBATCH_ACTOR") or getpass.getuser()


def record_reveal(session: Session, action: str, batch_id: int | None, detail: str | None = None) -> None:
    """Record that unmasked PII is being shown; in the caller's transaction, before showing it."""
    who = actor()
    session.add(AuditEvent(actor=who[:128], action=action[:64], batch_id=batch_id, detail=detail))
    log.warning("unmasked PII revealed", actor=who, action=action, batch_id=batch_id)
