"""The API's request and response bodies: what the OpenAPI schema says and responses obey."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from producers.api.cards import CardIn


class VerificationIn(CardIn):
    provider: str | None = Field(default=None, max_length=32)
    config: dict[str, Any] = Field(default_factory=dict)
    callback_url: str | None = Field(default=None, max_length=2048)


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cards: list[CardIn] | None = Field(default=None, description="the cards inline")
    manifest: str | None = Field(
        default=None, max_length=2048, description="or a CSV manifest: s3://bucket/key"
    )
    provider: str | None = Field(default=None, max_length=32)
    config: dict[str, Any] = Field(default_factory=dict)
    callback_url: str | None = Field(default=None, max_length=2048)
    progress_step: int | None = Field(default=None, ge=1, description="batch.progress every N finished cards")


class Submitted(BaseModel):
    id: int
    batch_id: int
    status: str


class BatchSubmitted(BaseModel):
    id: int
    rows: int
    queued: int
    rejected: int


class Attempts(BaseModel):
    calls: int
    billable: int
    retries: int


class VerificationOut(BaseModel):
    id: int
    batch_id: int
    external_ref: str | None
    status: str
    terminal: bool
    reason: str | None
    result: dict[str, Any] | None
    warnings: list[str]
    attempts: Attempts
    reused: bool
    created_at: str | None
    finished_at: str | None


class BatchOut(BaseModel):
    id: int
    state: str
    provider: str
    total_rows: int
    ingest_complete: bool
    counts: dict[str, int]
    jobs: int
    terminal: int
    progress: float
    finished: bool
    created_at: str | None
    finished_at: str | None


class ResultItem(BaseModel):
    id: int
    row: int | None
    external_ref: str | None
    status: str
    reason: str | None
    result: dict[str, Any] | None


class ResultsPage(BaseModel):
    items: list[ResultItem]
    next_cursor: int | None


class Cancelled(BaseModel):
    id: int
    cancelled_jobs: int
