"""Routing rules for S3 upload events: which provider, config and batch an upload goes to.

One listener serves several flows (issue 19). A rule matches an upload either by where
it was written (``prefix``: ``bucket`` or ``bucket/key-prefix``) or by the routing key
the uploader put on the object (``route``: the ``x-amz-meta-route`` metadata value or
the sidecar's ``route``). Rules are tried in order; the first match wins. An upload no
rule matches goes to the listener's own provider, config and standing batch.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The source of a rule's standing batch: ``events:<rule.batch>`` (the listener's own
# batch is ``sqs:<queue url>``). The worker reads it to tell a card routed by a rule.
ROUTED_SOURCE = "events:"


def routed_source(batch: str) -> str:
    return f"{ROUTED_SOURCE}{batch}"


class EventRoute(BaseModel):
    """One rule of ``IDBATCH_EVENTS_ROUTES``."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key must not be dropped silently

    prefix: str | None = Field(default=None, min_length=1)
    route: str | None = Field(default=None, min_length=1, max_length=64)
    provider: str
    config: dict[str, Any] = Field(default_factory=dict)
    # The standing batch's name: uploads routed to one name share one batch.
    batch: str = Field(min_length=1, max_length=128)

    @model_validator(mode="after")
    def _needs_a_matcher(self) -> EventRoute:
        if self.prefix is None and self.route is None:
            raise ValueError("an events route needs a prefix or a route key")
        return self

    def matches(self, bucket: str, key: str, route: str | None) -> bool:
        if self.route is not None and route != self.route:
            return False
        return self.prefix is None or f"{bucket}/{key}".startswith(self.prefix)


def route_for(routes: list[EventRoute], bucket: str, key: str, route: str | None) -> EventRoute | None:
    """The first rule matching the upload, or None (the listener's own flow)."""
    return next((r for r in routes if r.matches(bucket, key, route)), None)
