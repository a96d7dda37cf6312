"""A webhook receiver for tests: fails the first ``fail_first`` deliveries, then verifies each
with the ``standardwebhooks`` library and records it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass
class Receiver:
    secrets: list[str]
    fail_first: int = 0
    seen: int = 0
    failed: int = 0
    bad_signatures: int = 0
    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # by webhook-id
    deliveries: list[str] = field(default_factory=list)  # webhook-ids in arrival order
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            body = await request.body()
            with self.lock:
                self.seen += 1
                if self.seen <= self.fail_first:
                    self.failed += 1
                    return Response(status_code=503)
            verified = None
            for secret in self.secrets:
                try:
                    verified = Webhook(secret).verify(body, dict(request.headers))
                    break
                except WebhookVerificationError:
                    continue
            with self.lock:
                if verified is None:
                    self.bad_signatures += 1
                    return Response(status_code=400)
                msg_id = request.headers["webhook-id"]
                self.deliveries.append(msg_id)
                self.events[msg_id] = verified
            return Response(status_code=204)

        return Starlette(routes=[Route("/hook", hook, methods=["POST"])])
