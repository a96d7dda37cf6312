"""The worker's check of an upload's routing key against the batch its card is in (issue 19).

A card must never be verified by the wrong provider; but a worker must not refuse a card
the listener routed correctly just because the worker was started without the rules.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from db.jobs import Claim
from idbatch.domain import BatchKind
from idbatch.event_routes import EventRoute
from idbatch.providers.base import ImageSource
from idbatch.settings import Settings
from workers.runtime import Runtime
from workers.upload_claims import Unusable, adopt

FID = EventRoute(route="faceid", provider="tencent_faceid", batch="fid")


def _adopt(source: str, routes: list[EventRoute], route: str = "faceid") -> Claim:
    url = "s3://up/in/C1-front.jpg"
    claimed = Claim(1, 1, 1, url, None, "tencent_faceid", {}, source, kind=BatchKind.EVENTS)
    front = ImageSource(url, None, metadata={"route": route})
    with httpx.Client() as client:
        settings = Settings(events_routes=routes, events_sidecar=False)
        rt = Runtime(settings=settings, client=client, worker_id="w:1")
        return adopt(claimed, front, None, rt)  # no other claim: nothing is stored, nothing read


@pytest.mark.parametrize(
    ("source", "routes"),
    [("events:fid", [FID]), ("events:fid", [])],  # the same rules, or none: the listener's choice holds
)
def test_a_card_the_listener_routed_by_its_key_is_verified(source: str, routes: list[Any]) -> None:
    assert _adopt(source, routes).job_id == 1


def test_a_route_key_on_a_card_of_the_listeners_own_batch_is_refused_without_rules() -> None:
    with pytest.raises(Unusable, match=r"routing key 'faceid' matches no rule"):
        _adopt("sqs:http://q/uploads", [])


def test_a_rule_naming_another_batch_says_the_two_configurations_differ() -> None:
    with pytest.raises(Unusable, match=r"routes the card to batch 'fid', but it was recorded in another"):
        _adopt("events:ocr", [FID])
    with pytest.raises(Unusable, match=r"routes the card to batch 'fid'"):
        _adopt("sqs:http://q/uploads", [FID])


def test_a_key_no_rule_matches_is_refused_when_the_worker_has_rules() -> None:
    with pytest.raises(Unusable, match=r"routing key 'nosuch' matches no rule"):
        _adopt("events:fid", [FID], route="nosuch")
