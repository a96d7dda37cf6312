"""Tencent FaceID CheckIdCardInformation against the simulator over real HTTP."""

from __future__ import annotations

import httpx
import pytest

from idbatch.domain import Verdict, WarningCode
from idbatch.providers import errors
from tests.providers.conftest import SECRET_ID, Sim, card, identity

ACCOUNT = f"faceid:{SECRET_ID}"


def test_enrolled_identity_passes_with_fields_and_a_billed_call(sim: Sim) -> None:
    ident = identity()
    sim.enrol(ident)
    answer = sim.faceid().verify(sim.request(card(ident=ident)))
    result = answer.result
    assert result.verdict == Verdict.PASSED
    assert (result.name, result.sex, result.id_number) == (ident.name, "男", ident.id_number)
    assert result.birth == ident.birth
    assert result.similarity is not None
    assert result.similarity >= 85
    assert [(c.provider_code, c.billable, c.handoff) for c in answer.calls] == [("Success", True, "inline")]
    assert sim.stats(ACCOUNT)["billable"] == 1


def test_image_url_handoff_is_fetched_by_the_provider(sim: Sim) -> None:
    sim.enrol(identity())
    answer = sim.faceid(handoff="url").verify(sim.request(card()))
    assert answer.result.verdict == Verdict.PASSED
    assert answer.calls[0].handoff == "url"


@pytest.mark.parametrize(
    ("variant", "warning"),
    [
        ("photocopy", WarningCode.PHOTOCOPY),
        ("screen_reshoot", WarningCode.SCREEN_RESHOOT),
        ("photoshopped", WarningCode.PHOTOSHOPPED),
        ("temporary_id", WarningCode.TEMPORARY_ID),
        ("border_incomplete", WarningCode.BORDER_INCOMPLETE),
        ("border_occluded", WarningCode.BORDER_OCCLUDED),
        ("blur", WarningCode.LOW_QUALITY),
    ],
)
def test_each_configured_warning_is_a_negative_verdict(sim: Sim, variant: str, warning: WarningCode) -> None:
    sim.enrol(identity())
    answer = sim.faceid().verify(sim.request(card(variants=[variant])))
    assert answer.result.verdict == Verdict.NEGATIVE
    assert warning in {w.code for w in answer.result.warnings}
    assert answer.calls[0].provider_code == "FailedOperation.OcrWarningOccurred"
    assert answer.calls[0].billable


def test_without_config_flags_a_photocopy_is_compared_normally(sim: Sim) -> None:
    sim.enrol(identity())
    answer = sim.faceid().verify(sim.request(card(variants=["photocopy"]), config={}))
    assert answer.result.verdict == Verdict.PASSED


@pytest.mark.parametrize(
    ("enrol", "code", "warning"),
    [
        ({"name": "别的名字"}, "FailedOperation.IdNameMisMatch", WarningCode.NAME_ID_MISMATCH),
        ({"portrait_seed": 12345}, "FailedOperation.CompareLowSimilarity", WarningCode.LOW_SIMILARITY),
        (None, "FailedOperation.IdNoExistSystem", WarningCode.ID_NOT_IN_REGISTRY),
    ],
)
def test_registry_outcomes_are_answers_not_failures(
    sim: Sim, enrol: dict[str, object] | None, code: str, warning: WarningCode
) -> None:
    ident = identity()
    if enrol is not None:
        sim.enrol(ident, **enrol)  # type: ignore[arg-type]
    answer = sim.faceid().verify(sim.request(card(ident=ident)))
    assert answer.result.verdict == Verdict.NEGATIVE
    assert [w.code for w in answer.result.warnings] == [warning]
    assert answer.calls[0].provider_code == code


def test_not_an_id_card_is_a_negative_answer(sim: Sim) -> None:
    from simulator.cards import render

    answer = sim.faceid().verify(sim.request(render(None)))
    assert [w.code for w in answer.result.warnings] == [WarningCode.NOT_ID_CARD]


def test_over_the_rate_is_rate_limited(sim: Sim) -> None:
    sim.enrol(identity())
    sim.state.quotas["faceid"] = 0  # a zero quota refuses every call: no timing involved
    with pytest.raises(errors.RateLimited) as info:
        sim.faceid().verify(sim.request(card()))
    assert info.value.provider_code == "RequestLimitExceeded"


def test_arrears_blocks_the_account(sim: Sim) -> None:
    sim.state.faults.update({"arrears": [f"tencent:{SECRET_ID}"]})
    with pytest.raises(errors.AccountBlocked) as info:
        sim.faceid().verify(sim.request(card()))
    assert info.value.provider_code == "UnauthorizedOperation.Arrears"


def test_unknown_secret_id_blocks_the_account(sim: Sim) -> None:
    with pytest.raises(errors.AccountBlocked):
        sim.faceid(secret_id="AKIDnobody").verify(sim.request(card()))


@pytest.mark.parametrize(
    "faults",
    [{"rate_5xx": 1.0}, {"outage_s": 60}, {"rate_reset": 1.0}, {"rate_timeout": 1.0}],
    ids=["internal_error", "outage_502", "connection_reset", "timeout"],
)
def test_server_side_faults_are_unavailable_and_not_billed(sim: Sim, faults: dict[str, float]) -> None:
    sim.state.faults.update(faults)
    provider = sim.faceid()
    provider._caller._client = httpx.Client(timeout=0.5)  # a short client timeout for the hang
    with pytest.raises(errors.Unavailable):
        provider.verify(sim.request(card()))
    assert sim.stats(ACCOUNT).get("billable", 0) == 0


def test_an_unreadable_image_is_rejected_before_sending(sim: Sim) -> None:
    with pytest.raises(errors.ItemRejected, match="not a readable image"):
        sim.faceid().verify(sim.request(b"not an image at all"))
    assert sim.stats(ACCOUNT) == {}


def test_an_unreadable_image_by_url_is_rejected_by_the_provider(sim: Sim) -> None:
    with pytest.raises(errors.ItemRejected) as info:
        sim.faceid().verify(sim.request(b"not an image at all", as_url=True))
    assert info.value.provider_code == "FailedOperation.ImageDecodeFailed"
    assert not info.value.billable
