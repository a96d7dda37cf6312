"""The Celery app, built from settings. ``celery -A workers.celery_app worker`` uses it."""

from __future__ import annotations

from idbatch.settings import get_settings
from workers.app_factory import create_celery

app = create_celery(get_settings())
