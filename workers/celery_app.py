"""The Celery app, built from settings. ``celery -A workers.celery_app worker|beat`` uses it."""

from __future__ import annotations

from dispatch.app import celery_app
from workers import observe  # noqa: F401 - Celery signal hooks: our logging, /metrics

app = celery_app()
# producers.api.entry is the Celery-native entry (idbatch.submit, issue 14): a producer-side
# task every worker serves; producers.events_beat resolves expired upload sides (issue 19).
# Named, not imported: workers never import producers.
app.conf.include = ["workers.tasks", "producers.api.entry", "producers.events_beat"]
