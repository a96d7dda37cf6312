"""Provider adapters behind one seam; ``build_provider`` picks one by name."""

from __future__ import annotations

import httpx
from pydantic import SecretStr

from idbatch.providers.base import Provider
from idbatch.settings import DEV_PLACEHOLDER, PROVIDER_SECRETS, AccountSpec, Settings

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


# Quotas the providers document (PROVIDERS.md); an account with no configured quota runs
# at these, so a forgotten setting cannot exceed the provider's limit.
DOCUMENTED_QUOTAS: dict[str, float] = {"tencent_faceid": 100.0, "tencent_ocr": 20.0}


def accounts_of(settings: Settings, name: str) -> list[AccountSpec]:
    """The provider's accounts: ``IDBATCH_ACCOUNTS``, or the one ``default`` account."""
    return settings.accounts.get(name) or [AccountSpec(name="default")]


def quota_of(settings: Settings, name: str, account: str) -> float:
    """calls/s for one account: per-account rate limit, account quota, provider rate limit,
    documented quota, in that order; 0 = no rate limit."""
    limits = settings.rate_limits
    if f"{name}:{account}" in limits:
        return float(limits[f"{name}:{account}"])
    spec = next((a for a in accounts_of(settings, name) if a.name == account), None)
    if spec is not None and spec.quota is not None:
        return spec.quota
    return float(limits.get(name, DOCUMENTED_QUOTAS.get(name, 0.0)))


def _secret(settings: Settings, spec: AccountSpec, key: str) -> str:
    own: SecretStr | None = getattr(spec, key)
    value: str = (own or getattr(settings, key)).get_secret_value()
    if settings.env == "production" and value == DEV_PLACEHOLDER:
        # The settings check covers IDBATCH_PROVIDER; a batch may name another provider.
        raise ValueError(f"production refuses development placeholders: set IDBATCH_{key.upper()}")
    return value


def build_providers(name: str, settings: Settings, client: httpx.Client) -> list[Provider]:
    """One adapter per account of provider ``name``, sharing the process's ``httpx.Client``."""
    return [build_provider(name, settings, client, spec) for spec in accounts_of(settings, name)]


def build_provider(
    name: str, settings: Settings, client: httpx.Client, spec: AccountSpec | None = None
) -> Provider:
    """The configured adapter for one account (default: the first)."""
    if name not in KNOWN_PROVIDERS:
        raise ValueError(f"unknown provider {name!r}")
    spec = spec or accounts_of(settings, name)[0]
    secrets = {key: _secret(settings, spec, key) for key in PROVIDER_SECRETS[name]}
    if name == "acedata":
        from idbatch.providers.acedata import AceDataProvider

        return AceDataProvider(
            client,
            base_url=spec.base_url or settings.acedata_base_url,
            token=secrets["acedata_token"],
            similarity_threshold=settings.similarity_threshold,
            account=spec.name,
        )
    if name == "tencent_faceid":
        from idbatch.providers.tencent_faceid import TencentFaceIdProvider

        return TencentFaceIdProvider(
            client,
            base_url=spec.base_url or settings.faceid_base_url,
            secret_id=secrets["tencent_secret_id"],
            secret_key=secrets["tencent_secret_key"],
            region=settings.tencent_region,
            handoff=settings.tencent_handoff,
            similarity_threshold=settings.similarity_threshold,
            account=spec.name,
        )
    if name == "tencent_ocr":
        from idbatch.providers.tencent_ocr import TencentOcrProvider

        return TencentOcrProvider(
            client,
            base_url=spec.base_url or settings.ocr_base_url,
            secret_id=secrets["tencent_secret_id"],
            secret_key=secrets["tencent_secret_key"],
            region=settings.tencent_region,
            handoff=settings.tencent_handoff,
            account=spec.name,
        )
    from idbatch.providers.aliyun_market import AliyunMarketProvider

    return AliyunMarketProvider(
        client,
        base_url=spec.base_url or settings.aliyun_base_url,
        path=settings.aliyun_path,
        appcode=secrets["aliyun_appcode"],
        handoff=settings.aliyun_handoff,
        account=spec.name,
    )
