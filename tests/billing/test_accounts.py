"""Several accounts per provider: one in arrears, the batch completes on the other."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from db.accounts import accounts
from db.migrate import upgrade
from db.models import Attempt
from db.session import session_scope
from idbatch.domain import AttemptOutcome, JobStatus
from idbatch.providers import DOCUMENTED_QUOTAS, quota_of
from idbatch.servers import BackgroundServer
from simulator.cards import load_registry
from tests.conftest import Env
from tests.durability.conftest import Stack, make_sample

pytestmark = pytest.mark.integration

GOOD, BROKE = "sim-token-good", "sim-token-broke"


@pytest.fixture
def two_accounts(env: Env, pg_db: str, gateway: str, tmp_path: Path) -> Iterator[Stack]:
    from simulator.app import create_app
    from simulator.state import SimState

    manifest, registry = make_sample(tmp_path / "cards", 12, seed=21)
    state = SimState(registry=load_registry(registry), seed=2)
    state.faults.update({"arrears": [f"acedata:{BROKE}"]})
    with BackgroundServer(create_app(state, acedata_tokens={GOOD, BROKE})) as sim:
        specs = [{"name": "good", "acedata_token": GOOD}, {"name": "broke", "acedata_token": BROKE}]
        settings = env(
            database_url=pg_db,
            acedata_base_url=sim.url,
            accounts=json.dumps({"acedata": specs}),
            ratelimit_backend="local",
            requeue_after_s="0.2",
        )
        upgrade(settings.database_url)
        yield Stack(settings, manifest, state, sim.url)


def test_an_account_in_arrears_does_not_stop_the_batch(two_accounts: Stack) -> None:
    stack = two_accounts
    batch = stack.submit()
    stack.run_open(batch)

    assert set(stack.statuses(batch)) <= {JobStatus.PASSED, JobStatus.NEGATIVE}
    with session_scope() as session:
        rows = session.execute(select(Attempt.account, Attempt.outcome)).all()
        circuits = {a["account"]: a["state"] for a in accounts(session)}
    by_account = Counter((r.account, r.outcome) for r in rows)
    assert by_account[("good", AttemptOutcome.ANSWERED)] == 12  # every card answered on the good key
    assert by_account[("broke", AttemptOutcome.ANSWERED)] == 0
    assert circuits.get("broke") in ("open", "half_open")  # the blocked key is stopped, not retried
    assert circuits.get("good", "closed") == "closed"


def test_documented_quotas_apply_when_nothing_is_configured(env: Env) -> None:
    settings = env()
    assert quota_of(settings, "tencent_faceid", "default") == DOCUMENTED_QUOTAS["tencent_faceid"] == 100.0
    assert quota_of(settings, "tencent_ocr", "default") == 20.0
    settings = env(rate_limits=json.dumps({"tencent_ocr": 10, "tencent_ocr:k2": 5}))
    assert quota_of(settings, "tencent_ocr", "default") == 10.0
    assert quota_of(settings, "tencent_ocr", "k2") == 5.0


def test_an_account_spec_with_a_misspelt_field_is_refused(env: Env) -> None:
    with pytest.raises(ValueError, match="acedata_tokn"):
        env(accounts=json.dumps({"acedata": [{"name": "a", "acedata_tokn": "x"}]}))
