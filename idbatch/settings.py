"""One typed settings object, read from ``IDBATCH_*`` environment variables.

The defaults give the embedded mode (SQLite file, in-memory broker, simulator on
loopback) so that ``idbatch demo`` works on a fresh clone with no configuration.
Production refuses the development placeholders: a forgotten secret should stop
the process at start-up, not leak through a demo token months later.
"""

from __future__ import annotations

import base64
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

from idbatch.event_routes import EventRoute

DEV_PLACEHOLDER = "dev-placeholder"
# The credentials each provider needs; production refuses placeholders for the one in use.
PROVIDER_SECRETS: dict[str, tuple[str, ...]] = {
    "acedata": ("acedata_token",),
    "tencent_faceid": ("tencent_secret_id", "tencent_secret_key"),
    "tencent_ocr": ("tencent_secret_id", "tencent_secret_key"),
    "aliyun_market": ("aliyun_appcode",),
}


MIN_SECRET_BYTES = 32
# Values published in this repository (tests, compose examples, benchmarks): never secret.
KNOWN_DEFAULTS = frozenset(
    {
        DEV_PLACEHOLDER,
        "k3Qk0m9o0nQyX1y4e5Vv2y4j4h2m0p3qZ9a8b7c6d5E=",
        "compose-local-gateway-secret",
        "chaos-gateway-secret",
        "sim-acedata-token",
        "sim-tencent-secret-id",
        "sim-tencent-secret-key",
        "sim-aliyun-appcode",
    }
)


def _known_default(value: str) -> bool:
    weak = value.lower() in {"changeme", "secret", "password"}
    return value in KNOWN_DEFAULTS or value.startswith("replace-me") or weak


def _valid_fernet_key(value: str) -> bool:
    try:
        return len(base64.urlsafe_b64decode(value.encode())) == 32
    except ValueError:
        return False


class AccountSpec(BaseModel):
    """One credential set of a provider (``IDBATCH_ACCOUNTS``); unset fields fall back to the
    provider's single-account settings (``IDBATCH_ACEDATA_TOKEN`` ...)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field must not be dropped silently

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    quota: float | None = Field(default=None, ge=0)  # calls/s; None: rate_limits, then documented
    base_url: str | None = None
    acedata_token: SecretStr | None = None
    tencent_secret_id: SecretStr | None = None
    tencent_secret_key: SecretStr | None = None
    aliyun_appcode: SecretStr | None = None


class Settings(BaseSettings):
    """Everything configurable about idbatch; see the README's configuration table."""

    # hide_input_in_errors: a refused setting names the variable, never echoes a secret.
    model_config = SettingsConfigDict(
        env_prefix="IDBATCH_", env_file=None, extra="ignore", hide_input_in_errors=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Secrets may come from files: ``IDBATCH_SECRETS_DIR`` names a folder (compose
        mounts Docker secrets at /run/secrets) where a file named like the variable,
        ``idbatch_pii_key``, holds the value. Files keep secrets out of the environment,
        which ``docker inspect`` and /proc show; a variable that is set still wins."""
        secrets_dir = os.environ.get("IDBATCH_SECRETS_DIR")
        if secrets_dir:
            file_secret_settings = SecretsSettingsSource(settings_cls, secrets_dir=secrets_dir)
        return init_settings, env_settings, dotenv_settings, file_secret_settings

    env: Literal["development", "production"] = "development"
    data_dir: Path = Path(".idbatch")

    database_url: str = ""
    broker_url: str = "memory://"
    queue: str = "idbatch.verify"
    # Celery task events (Flower, ``celery events``); off by default: two messages per task.
    celery_events: bool = False

    provider: str = "acedata"
    acedata_base_url: str = "https://api.acedata.cloud"
    acedata_token: SecretStr = SecretStr(DEV_PLACEHOLDER)
    # Tencent Cloud API 3.0 (FaceID CheckIdCardInformation, OCR IDCardOCR): one key pair,
    # two product endpoints. The simulator serves them under /tencent/faceid and /tencent/ocr.
    tencent_secret_id: SecretStr = SecretStr(DEV_PLACEHOLDER)
    tencent_secret_key: SecretStr = SecretStr(DEV_PLACEHOLDER)
    tencent_region: str = ""  # neither action needs one
    faceid_base_url: str = "https://faceid.intl.tencentcloudapi.com"  # seed 002_
    ocr_base_url: str = "https://ocr.tencentcloudapi.com"
    # Aliyun-marketplace ID card OCR: APPCODE auth; host and path from the purchase page.
    aliyun_appcode: SecretStr = SecretStr(DEV_PLACEHOLDER)
    aliyun_base_url: str = "https://idcardocr.market.alicloudapi.com"
    aliyun_path: str = "/ocr/idcard"
    # How a local file reaches a provider that takes both forms: "inline" (base64 in the
    # request; nothing needs to reach our image gateway) or "url" (a gateway URL).
    tencent_handoff: Literal["url", "inline"] = "inline"
    aliyun_handoff: Literal["url", "inline"] = "inline"

    # Several accounts per provider, {"provider": [AccountSpec, ...]}: each has its own
    # rate limit and circuit; jobs spread over the healthy ones in proportion to quota.
    # A provider not named here runs one account, "default", from the settings above.
    accounts: dict[str, list[AccountSpec]] = Field(default_factory=dict)

    @field_validator("accounts")
    @classmethod
    def _accounts_known_and_distinct(
        cls, value: dict[str, list[AccountSpec]]
    ) -> dict[str, list[AccountSpec]]:
        """A provider name that is misspelt would be ignored (its jobs on the single
        default account), and two accounts of one name would share a limiter and a circuit
        key while holding different credentials: both refused."""
        for provider, specs in value.items():
            if provider not in PROVIDER_SECRETS:
                raise ValueError(f"unknown provider {provider!r}; one of {', '.join(PROVIDER_SECRETS)}")
            names = [spec.name for spec in specs]
            if len(set(names)) != len(names):
                raise ValueError(f"{provider}: two accounts are named alike ({', '.join(names)})")
        return value

    similarity_threshold: float = 70.0
    http_timeout_s: float = 10.0

    worker_concurrency: int = Field(default=32, ge=1, le=1024)
    max_attempts: int = Field(default=6, ge=1)
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 120.0
    lease_s: int = 300
    # A card already answered (same image bytes, provider, config and claims) reuses that
    # paid answer if it is at most this old; 0 = always call again.
    reuse_max_age_days: float = Field(default=30.0, ge=0)
    # Test pooled connections before use; `idbatch worker` turns it off (see db.session).
    db_pre_ping: bool = True
    # The sweeper (workers.sweeper) re-publishes from Postgres: due retries every
    # ``sweep_interval_s``; queued jobs whose message is older than ``requeue_after_s``
    # once the broker queue is empty (their message was lost).
    sweep_interval_s: float = Field(default=2.0, gt=0)
    requeue_after_s: float = Field(default=120.0, gt=0)

    # Provider quotas shared by every worker (workers.ratelimit, docs/throughput.md):
    # {"provider" or "provider:account": calls/s}; accounts not named have no rate limit
    # but still honour Retry-After and the in-flight cap. The limiter runs at
    # quota * (1 - rate_headroom): the headroom absorbs grant-to-arrival jitter against
    # providers that count calls in any sliding one-second window.
    rate_limits: dict[str, float] = Field(default_factory=dict)
    rate_headroom: float = Field(default=0.02, ge=0, lt=1)
    max_in_flight: int = Field(default=256, ge=0)  # per provider account; 0 = no cap
    ratelimit_backend: Literal["auto", "redis", "local", "off"] = "auto"  # auto: Redis broker -> redis
    ratelimit_url: str = ""  # default: the broker URL when it is Redis
    ratelimit_prefix: str = "idbatch:rl"
    # A slot further than this gives the job back (retry_wait, attempt unspent). With the
    # line below only a few threads per process hold a slot, so a wait this long is a
    # hole in the schedule (a late wake-up moved it back) or a Retry-After pause, not a
    # queue of threads: worth sleeping through rather than a database and broker round
    # trip. Without the line (ratelimit_local_slots=0), ~2 s was the default.
    ratelimit_max_wait_s: float = Field(default=10.0, ge=0)
    # Each worker process lets this many of its threads at a time hold a reservation in an
    # account's shared schedule; the rest wait their turn in the process (workers.gate).
    # 0 = every thread asks the shared limiter directly (the shape before issue 17's line).
    ratelimit_local_slots: int = Field(default=2, ge=0)
    ratelimit_line_wait_s: float = Field(default=30.0, ge=0)  # a longer turn defers the job
    circuit_probe_s: float = Field(default=300.0, ge=0)  # half-open probe period; 0 = operator only
    circuit_cache_s: float = Field(default=2.0, ge=0)

    # Local image files are handed to URL-only providers through the image gateway,
    # which serves them under short-lived HMAC-signed URLs.
    gateway_url: str = "http://127.0.0.1:8701"
    gateway_secret: SecretStr = SecretStr(DEV_PLACEHOLDER)
    gateway_url_ttl_s: int = 300

    image_max_bytes: int = 10 * 1024 * 1024
    # Local images must lie in the manifest's folder (symlinks resolved); these folders
    # are allowed too. The image gateway serves only files under the manifest folders it
    # is told about and these roots.
    image_roots: list[Path] = Field(default_factory=list)

    # S3: credentials and region come from boto3's default chain (AWS_* env, profile,
    # instance role); only the endpoint is ours, for S3-compatible stores (MinIO).
    s3_endpoint_url: str | None = None
    # Buckets ("bucket" or "bucket/prefix") that s3:// image refs and manifests may name.
    # Unset: any bucket in development, none in production (idbatch.storage.s3_allowlist).
    s3_allowed: list[str] = Field(default_factory=list)
    s3_presign_ttl_s: int = Field(default=300, ge=30, le=3600)
    # How S3 images reach each provider, {"provider": "url" | "inline"}; providers not
    # named use idbatch.storage.handoff.DEFAULT_HANDOFF.
    s3_handoff: dict[str, Literal["url", "inline"]] = Field(default_factory=dict)
    # `idbatch listen`: S3 event notifications from SQS (endpoint override for tests/local).
    sqs_endpoint_url: str | None = None
    events_queue_url: str = ""
    # Buckets whose upload events `idbatch listen` trusts; empty: any (not for production).
    events_buckets: list[str] = Field(default_factory=list)
    events_dlq_url: str = ""
    events_wait_s: int = Field(default=20, ge=0, le=20)
    events_visibility_s: int = Field(default=300, ge=1, le=43200)
    events_max_receives: int = Field(default=5, ge=1)
    # --- S3 upload events that understand cards (issue 19) ---
    # A `<ref>-front.*` / `<ref>-back.*` upload waits in Postgres (event_object) this long
    # for its other side; then a lone front is a one-sided job (providers reading only a
    # front) or rejected naming the missing side, and a lone back is rejected.
    events_pair_window_s: float = Field(default=300.0, ge=0)
    # How often the listener's loop resolves sides whose window ended (`idbatch events sweep`
    # does it too, from cron or by hand, so expiry never depends on one process's memory).
    events_sweep_s: float = Field(default=1.0, gt=0)
    # Receives in flight at once (each up to 10 messages), and so the HEAD requests that
    # read the uploads' metadata; one process commits what they bring, in order.
    events_concurrency: int = Field(default=4, ge=1, le=64)
    # Prefix/route-key rules selecting provider, config and batch (idbatch.event_routes).
    events_routes: list[EventRoute] = Field(default_factory=list)
    # Read claims from a `<ref>.json` sidecar object when the image has no claim metadata.
    events_sidecar: bool = True
    # Who reads an upload's claims (its user metadata, else its `<ref>.json` sidecar).
    # "worker": the worker, from the HEAD it makes of the front before every call (no
    # extra S3 request; a bad claim rejects the job there, before any paid call); the
    # listener sends no HEAD unless a rule routes by key. "listener": the listener HEADs
    # each new object (AWS events carry no metadata; MinIO's do), so bad claims are
    # rejected at ingest, one S3 request more per event. Metadata an event carries (MinIO)
    # is read by the listener either way.
    events_claims: Literal["worker", "listener"] = "worker"
    # Ingest publishes one message per committed chunk that a worker fans out ("fanout"),
    # or one message per job from the producer ("each").
    ingest_publish: Literal["fanout", "each"] = "fanout"
    # Jobs per ``verify_many`` message (issue 17): one Celery task runs up to this many
    # jobs one after another on its thread, so the broker and Celery cost per message is
    # paid once per group. Lists shorter than ``group x worker_concurrency`` are split
    # finer (every thread gets work); 1 = one ``verify`` message per job.
    verify_group: int = Field(default=8, ge=1, le=64)
    # Manifest URLs pointing at loopback/private/link-local addresses are refused
    # (SSRF); tests and the simulator may allow named hosts explicitly.
    allowed_private_hosts: list[str] = Field(default_factory=list)

    # Fernet key (urlsafe base64, 32 bytes) protecting PII at rest. In development
    # it is generated once into data_dir/pii.key.
    pii_key: SecretStr | None = None
    # Keys being rotated out: they still decrypt, nothing is written under them
    # (docs/security.md, "Key rotation"); drop them once `idbatch keys rotate` is done.
    pii_old_keys: list[SecretStr] = Field(default_factory=list)

    log_level: str = "INFO"
    log_json: bool = False

    # --- Operating it (issue 16): metrics and logs ---
    # Each `idbatch worker` and `idbatch beat` serves Prometheus /metrics on this port
    # (0: no server). Several processes on one host need one port each, or one
    # PROMETHEUS_MULTIPROC_DIR shared by them (see idbatch/metrics.py).
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # Loopback by default: metrics name accounts and batches; containers set 0.0.0.0.
    metrics_host: str = "127.0.0.1"
    # OpenTelemetry tracing of Celery, httpx and SQLAlchemy (the `otel` extra), off by
    # default; the exporter reads the standard OTEL_EXPORTER_OTLP_* variables.
    otel_enabled: bool = False
    otel_service_name: str = "idbatch"

    # -- HTTP API, Celery entry and webhooks (issue 14; README "Jobs from other services") --
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=0, le=65535)
    api_workers: int = Field(default=1, ge=1)  # uvicorn processes of `idbatch api`
    api_threads: int = Field(default=8, ge=1)  # requests handled at once per process (DB work)
    api_max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)  # whole request body
    api_max_cards: int = Field(default=10000, ge=1)  # cards in one POST /v1/batches
    api_quota_per_s: float = Field(default=50.0, ge=0)  # requests/s per tenant (all API processes); 0 = off
    api_quota_burst: float = Field(default=100.0, ge=1)
    api_idempotency_ttl_s: float = Field(default=86400.0, ge=1)  # how long an Idempotency-Key is kept
    api_wait_max_s: float = Field(default=30.0, ge=0)  # longest ?wait= of GET /v1/verifications/{id}
    # Inline (base64) images are written here, content-addressed; workers read them from the
    # same path (a volume shared by API and workers). Default: data_dir/api-images.
    api_image_dir: Path | None = None
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_backoff_base_s: float = Field(default=5.0, gt=0)
    webhook_backoff_cap_s: float = Field(default=3600.0, gt=0)
    webhook_max_age_s: float = Field(default=86400.0, gt=0)  # then the event is failed
    webhook_lease_s: float = Field(default=60.0, gt=0)
    # -- HTTP API performance (issue 14 targets; README "Jobs from other services") --
    # A verified API key is remembered per API process for this long: a revoked key (or
    # changed scopes/quota) takes effect within it. 0 = look the key up on every request.
    api_auth_cache_s: float = Field(default=2.0, ge=0)
    # Redis holding what all API processes share (db.api_shared): the key-revocation epoch
    # (a revoked key is refused by the very next request in every process) and the
    # per-tenant quota buckets. Default: ratelimit_url, else the broker URL when it is
    # Redis; "off" (or no Redis) = per process (revocation within api_auth_cache_s).
    # Keys live under api_shared_prefix (default "idbatch:api:<queue>": one deployment).
    api_shared_url: str = ""
    api_shared_prefix: str = ""
    # Single-card submissions publish their job ids coalesced: one fan-out message per
    # this many milliseconds per API process instead of one message per card. 0 = publish
    # each card's message right after its commit.
    api_publish_linger_ms: float = Field(default=50.0, ge=0)
    # POST /v1/verifications answered by producers.api.fastpath (same checks, without
    # FastAPI's per-request machinery); false = through the FastAPI route.
    api_fast_path: bool = True
    # The API process's young-generation GC threshold (gc.set_threshold's first value);
    # 0 keeps Python's 700. See producers.api.app's lifespan for why.
    api_gc_young: int = Field(default=20000, ge=0)

    # --- Reruns, schedules, export, billing (issue 15) ---
    # How often beat asks Postgres for due schedule slots; a slot fires once whatever
    # the number of beats (a unique (schedule, slot) row), so this only bounds lateness.
    schedule_check_s: float = Field(default=30.0, gt=0)
    # Price of one billable call per provider (any currency), for the rerun plan's cost;
    # a provider without a price shows calls only.
    call_prices: dict[str, float] = Field(default_factory=dict)
    # Development and tests only: "today" for card validity (expiry verdicts, expiring
    # policies, drift) is this many days ahead. Production refuses anything but 0.
    clock_offset_days: int = 0
    # Who may ``export --reveal`` (IDBATCH_ACTOR or the OS user): empty means anyone in
    # development and nobody in production.
    reveal_actors: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _derive_and_check(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'idbatch.db').as_posix()}"
        if self.env == "production":
            placeholders = [
                name
                for name in ("gateway_secret", *PROVIDER_SECRETS.get(self.provider, ()))
                if _known_default(getattr(self, name).get_secret_value())
            ]
            if self.pii_key is None or _known_default(self.pii_key.get_secret_value()):
                placeholders.append("pii_key")
            if placeholders:
                names = ", ".join(f"IDBATCH_{n.upper()}" for n in placeholders)
                raise ValueError(f"production refuses development placeholders: set {names}")
            # Errors name the variable, never any part of its value.
            if len(self.gateway_secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
                raise ValueError(f"IDBATCH_GATEWAY_SECRET must be at least {MIN_SECRET_BYTES} random bytes")
        if self.env == "production" and self.clock_offset_days:
            raise ValueError("IDBATCH_CLOCK_OFFSET_DAYS is for development and tests only")
        if self.pii_key is not None and not _valid_fernet_key(self.pii_key.get_secret_value()):
            raise ValueError("IDBATCH_PII_KEY must be 32 url-safe base64-encoded bytes (a Fernet key)")
        return self

    def pii_key_bytes(self) -> bytes:
        """The PII key; in development, created once and kept in ``data_dir``."""
        if self.pii_key is not None:
            return self.pii_key.get_secret_value().encode()
        path = self.data_dir / "pii.key"
        if not path.exists():
            private_dir(self.data_dir)
            key = base64.urlsafe_b64encode(secrets.token_bytes(32))
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(key)
        return path.read_bytes().strip()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings; tests call ``get_settings.cache_clear()`` after changing env."""
    return Settings()


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) readable by this user only: it holds PII and keys."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path
