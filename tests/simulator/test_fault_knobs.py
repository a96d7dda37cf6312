"""The code knobs: "next N calls" and "rate per call", set over the admin API or in code."""

from __future__ import annotations

import functools

import pytest

from idbatch.domain import Verdict
from idbatch.providers import errors
from simulator.state import Faults
from tests.providers.conftest import SECRET_ID, Sim, card, identity


@functools.cache
def _card() -> bytes:
    return card(ident=identity())


def _set(sim: Sim, knobs: dict[str, object]) -> tuple[int, dict[str, object]]:
    response = sim.client.post(sim.url + "/_sim/faults", json=knobs)
    return response.status_code, response.json()


def test_next_n_answers_exactly_n_calls_then_the_real_answer(sim: Sim) -> None:
    status, shown = _set(sim, {"next": {"ocr:IdCardTooSmall": 3}})
    assert status == 200
    assert shown["next"] == {
        "ocr:FailedOperation.IdCardTooSmall": {"count": 3, "in": "error", "message": None}
    }
    provider = sim.ocr()
    for _ in range(3):
        with pytest.raises(errors.ItemRejected) as info:
            provider.verify(sim.request(_card(), config={}))
        assert info.value.provider_code == "FailedOperation.IdCardTooSmall"
    assert provider.verify(sim.request(_card(), config={})).result.verdict == Verdict.PASSED
    stats = sim.stats(f"ocr:{SECRET_ID}")
    assert (stats["injected"], stats["by_code"]["FailedOperation.IdCardTooSmall"], stats["billable"]) == (
        3,
        3,
        1,
    )


def test_a_rate_of_one_answers_every_call_and_zero_removes_it(sim: Sim) -> None:
    sim.enrol(identity())
    _set(sim, {"codes": {"faceid:CompareFail": {"rate": 1.0}}})
    for _ in range(3):
        with pytest.raises(errors.Unavailable):
            sim.faceid().verify(sim.request(_card(), config={}))
    status, shown = _set(sim, {"codes": {"faceid:CompareFail": 0}})
    assert (status, shown["codes"]) == (200, {})
    assert sim.faceid().verify(sim.request(_card(), config={})).result.verdict == Verdict.PASSED


def test_a_fractional_rate_answers_about_that_share(sim: Sim) -> None:
    sim.state.quotas["acedata"] = 1e9  # 100 quick calls, none over the rate
    _set(sim, {"codes": {"acedata:api_error": 0.3}})
    outcomes = []
    for _ in range(100):
        response = sim.client.post(
            sim.url + "/identity/idcard/check-1e",
            json={},
            headers={"authorization": "Bearer sim-acedata-token"},
        )
        outcomes.append(response.status_code)
    injected = outcomes.count(500)
    assert outcomes.count(400) == 100 - injected  # the rest reach the (bad) body check
    assert 15 <= injected <= 45  # seeded generator: deterministic, and near 30


def test_next_knobs_go_first_in_the_order_they_were_set(sim: Sim) -> None:
    _set(sim, {"next": {"aliyun-gateway:Quota Exhausted": 1, "aliyun:469": 1}, "codes": {"aliyun:502": 1.0}})
    classes = []
    for _ in range(3):
        with pytest.raises(errors.ProviderError) as info:
            sim.aliyun().verify(sim.request(_card(), config={}))
        classes.append((type(info.value), info.value.http_status))
    assert classes == [(errors.AccountBlocked, 403), (errors.Unavailable, 469), (errors.Unavailable, 502)]


@pytest.mark.parametrize(
    "knobs",
    [
        {"next": {"faceid:NoSuchThing": 1}},
        {"next": {"faceid:UnKnown": 1}},  # FailedOperation.UnKnown or InternalError.UnKnown?
        {"next": {"tencent:InternalError": 1}},  # a protocol is the product asked
        {"next": {"ocr:IdCardTooSmall": {"count": 1, "in": "result"}}},  # FaceID only
        {"next": {"aliyun:464": {"count": 1, "message": "an invented message"}}},
        {"next": {"aliyun:464": {"count": 1, "colour": "red"}}},
        {"ocr_warn_list": "newest"},
        {"next": {"ocr:IdCardTooSmall": 1, "faceid:Nope": 1}},  # all or nothing
    ],
)
def test_a_wrong_knob_is_refused_with_400(sim: Sim, knobs: dict[str, object]) -> None:
    status, body = _set(sim, knobs)
    assert status == 400
    assert "bad fault setting" in str(body["error"])
    assert sim.state.faults.next == {}


def test_the_command_line_form_takes_json_strings() -> None:
    faults = Faults()
    faults.update({"next": '{"ocr:MultiCardError": 2}', "codes": '{"faceid:IdPhotoNoExist": 0.5}'})
    assert faults.next["ocr:FailedOperation.MultiCardError"].count == 2
    assert faults.codes["faceid:FailedOperation.IdPhotoNoExist"].rate == 0.5
    faults.update({"extra_fields": "true", "aliyun_msg": "list"})
    assert (faults.extra_fields, faults.aliyun_msg) == (True, "list")
