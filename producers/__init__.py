"""Producers turn inputs (CSV manifests, S3 listings and events, service submissions) into jobs."""
