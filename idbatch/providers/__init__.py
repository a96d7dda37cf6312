"""Provider adapters behind one seam; ``build_provider`` picks one by name."""

from __future__ import annotations

import httpx

from idbatch.providers.base import Provider
from idbatch.settings import DEV_PLACEHOLDER, PROVIDER_SECRETS, Settings

# The one list of providers: the keys of the secrets each one needs (idbatch.settings).
KNOWN_PROVIDERS = tuple(PROVIDER_SECRETS)


class ConfigError(ValueError):
    """A batch config names a key no adapter understands (a typo would silently turn a check off)."""


def config_keys(name: str) -> frozenset[str]:
    """Config keys a batch for provider ``name`` may carry.

    Our vocabulary (snake_case, shared by every adapter: one config can be sent to any
    provider, each translating what it supports) plus the vendor's own spellings.
    """
    from idbatch.providers import acedata, aliyun_market, tencent_faceid, tencent_ocr

    ours = {
        *acedata.CONFIG_KEYS,
        *tencent_faceid.CONFIG_KEYS,
        *tencent_ocr.CONFIG_KEYS,
        *aliyun_market.CONFIG_KEYS,
    }
    vendor = {
        "tencent_faceid": set(tencent_faceid.CONFIG_KEYS.values()),
        "tencent_ocr": set(tencent_ocr.CONFIG_KEYS.values()),
    }.get(name, set())
    return frozenset(ours | vendor)


def check_config(name: str, config: dict[str, object]) -> None:
    """Refuse an unknown provider or config key, naming what is valid."""
    if name not in KNOWN_PROVIDERS:
        raise ConfigError(f"unknown provider {name!r}; valid: {', '.join(KNOWN_PROVIDERS)}")
    unknown = sorted(set(config) - config_keys(name))
    if unknown:
        valid = ", ".join(sorted(config_keys(name)))
        raise ConfigError(f"unknown config key(s) {', '.join(unknown)} for {name}; valid keys: {valid}")


def _secret(settings: Settings, name: str, provider: str) -> str:
    value: str = getattr(settings, name).get_secret_value()
    if settings.env == "production" and value == DEV_PLACEHOLDER:
        # The settings check covers IDBATCH_PROVIDER; a batch may name another provider.
        raise ValueError(f"production refuses development placeholders: set IDBATCH_{name.upper()}")
    return value


def build_provider(name: str, settings: Settings, client: httpx.Client) -> Provider:
    """The configured adapter, sharing the process's one ``httpx.Client``."""
    if name not in KNOWN_PROVIDERS:
        raise ValueError(f"unknown provider {name!r}")
    secrets = {key: _secret(settings, key, name) for key in PROVIDER_SECRETS[name]}
    if name == "acedata":
        from idbatch.providers.acedata import AceDataProvider

        return AceDataProvider(
            client,
            base_url=settings.acedata_base_url,
            token=secrets["acedata_token"],
            similarity_threshold=settings.similarity_threshold,
        )
    if name == "tencent_faceid":
        from idbatch.providers.tencent_faceid import TencentFaceIdProvider

        return TencentFaceIdProvider(
            client,
            base_url=settings.faceid_base_url,
            secret_id=secrets["tencent_secret_id"],
            secret_key=secrets["tencent_secret_key"],
            region=settings.tencent_region,
            handoff=settings.tencent_handoff,
            similarity_threshold=settings.similarity_threshold,
        )
    if name == "tencent_ocr":
        from idbatch.providers.tencent_ocr import TencentOcrProvider

        return TencentOcrProvider(
            client,
            base_url=settings.ocr_base_url,
            secret_id=secrets["tencent_secret_id"],
            secret_key=secrets["tencent_secret_key"],
            region=settings.tencent_region,
            handoff=settings.tencent_handoff,
        )
    from idbatch.providers.aliyun_market import AliyunMarketProvider

    return AliyunMarketProvider(
        client,
        base_url=settings.aliyun_base_url,
        path=settings.aliyun_path,
        appcode=secrets["aliyun_appcode"],
        handoff=settings.aliyun_handoff,
    )
