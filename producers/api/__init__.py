"""The HTTP API and the Celery-native entry: jobs submitted by other services (issue 14)."""
