"""Sending Celery messages, in one place and only after the data they name is committed.

Below both producers and workers: each publishes through here by task *name*, so
neither imports the other.
"""
