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

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_PLACEHOLDER = "dev-placeholder"


class Settings(BaseSettings):
    """Everything configurable about idbatch; see the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="IDBATCH_", env_file=None, extra="ignore")

    env: Literal["development", "production"] = "development"
    data_dir: Path = Path(".idbatch")

    database_url: str = ""
    broker_url: str = "memory://"
    queue: str = "idbatch.verify"

    provider: str = "acedata"
    acedata_base_url: str = "https://api.acedata.cloud"
    acedata_token: SecretStr = SecretStr(DEV_PLACEHOLDER)

    similarity_threshold: float = 70.0
    http_timeout_s: float = 10.0

    worker_concurrency: int = Field(default=32, ge=1, le=1024)
    max_attempts: int = Field(default=6, ge=1)
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 120.0
    lease_s: int = 300

    # Local image files are handed to URL-only providers through the image gateway,
    # which serves them under short-lived HMAC-signed URLs.
    gateway_url: str = "http://127.0.0.1:8701"
    gateway_secret: SecretStr = SecretStr(DEV_PLACEHOLDER)
    gateway_url_ttl_s: int = 300

    image_max_bytes: int = 10 * 1024 * 1024
    # Manifest URLs pointing at loopback/private/link-local addresses are refused
    # (SSRF); tests and the simulator may allow named hosts explicitly.
    allowed_private_hosts: list[str] = Field(default_factory=list)

    # Fernet key (urlsafe base64, 32 bytes) protecting PII at rest. In development
    # it is generated once into data_dir/pii.key.
    pii_key: SecretStr | None = None

    log_level: str = "INFO"
    log_json: bool = False

    @model_validator(mode="after")
    def _derive_and_check(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'idbatch.db').as_posix()}"
        if self.env == "production":
            placeholders = [
                name
                for name in ("acedata_token", "gateway_secret")
                if getattr(self, name).get_secret_value() == DEV_PLACEHOLDER
            ]
            if self.pii_key is None:
                placeholders.append("pii_key")
            if placeholders:
                names = ", ".join(f"IDBATCH_{n.upper()}" for n in placeholders)
                raise ValueError(f"production refuses development placeholders: set {names}")
        return self

    def pii_key_bytes(self) -> bytes:
        """The PII key; in development, created once and kept in ``data_dir``."""
        if self.pii_key is not None:
            return self.pii_key.get_secret_value().encode()
        path = self.data_dir / "pii.key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            key = base64.urlsafe_b64encode(secrets.token_bytes(32))
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(key)
        return path.read_bytes().strip()

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings; tests call ``get_settings.cache_clear()`` after changing env."""
    return Settings()
