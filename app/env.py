"""Apply IDBATCH_* variables in this process and rebuild everything cached from settings.

Its own module (not ``app.embedded``) so that ``idbatch worker`` can call it without
importing the embedded mode's Alembic, image gateway and renderer: a worker's start-up
imports are CPU that ``bench/quota.py`` counts per job (issue 17).
"""

from __future__ import annotations

import os

from db import session as db_session
from dispatch import app as dispatch_app
from idbatch import pii
from idbatch.settings import Settings, get_settings
from workers import runtime as worker_runtime


def apply_env(values: dict[str, str]) -> Settings:
    """Set IDBATCH_* variables and rebuild everything cached from settings."""
    os.environ.update(values)
    get_settings.cache_clear()
    db_session.reset()
    worker_runtime.reset()
    dispatch_app.reset()
    pii.vault.cache_clear()
    return get_settings()
