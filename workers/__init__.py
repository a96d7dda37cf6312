"""Celery workers: the verify task, retry policy and the embedded in-process worker."""
