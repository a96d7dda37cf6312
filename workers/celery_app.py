"""The Celery app, built from settings. ``celery -A workers.celery_app worker|beat`` uses it."""

from __future__ import annotations

from dispatch.app import celery_app
from workers import observe  # noqa: F401 - Celery signal hooks: our logging, /metrics

app = celery_app()
app.conf.include = ["workers.tasks"]
