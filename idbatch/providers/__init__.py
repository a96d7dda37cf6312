"""Provider adapters behind one seam; ``build_provider`` picks one by name."""

from __future__ import annotations

import httpx

from idbatch.providers.base import Provider
from idbatch.settings import Settings


def build_provider(name: str, settings: Settings, client: httpx.Client) -> Provider:
    """The configured adapter, sharing the process's one ``httpx.Client``."""
    if name == "acedata":
        from idbatch.providers.acedata import AceDataProvider

        return AceDataProvider(
            client,
            base_url=settings.acedata_base_url,
            token=settings.acedata_token.get_secret_value(),
            similarity_threshold=settings.similarity_threshold,
        )
    raise ValueError(f"unknown provider {name!r}")


KNOWN_PROVIDERS = ("acedata",)
