"""Per-tenant provider accounts: a tenant's jobs are called and billed only on its own accounts.

Three tenants' worth of acedata tokens on one simulator: tenant A owns ``a_good`` and
``a_broke`` (in arrears), tenant B owns only ``b_broke`` (in arrears), and ``spare``
(good) belongs to nobody. Both tenants submit the *same* cards.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from db.migrate import upgrade
from db.models import Attempt, Batch, Job
from db.session import session_scope
from db.tenant_accounts import parse_accounts, set_accounts
from db.tenants import Principal, TenantError, authenticate, create_tenant, list_tenants
from idbatch.domain import TERMINAL_STATUSES, AttemptOutcome, ErrorClass, JobStatus
from idbatch.servers import BackgroundServer
from idbatch.settings import Settings
from producers.api.cards import CardIn
from producers.api.service import submit_cards, submit_single
from simulator.cards import load_registry
from tests.conftest import Env
from tests.durability.conftest import make_sample
from workers.runtime import runtime
from workers.sweeper import sweep
from workers.verify import process_job

pytestmark = pytest.mark.integration

TOKENS = {"a_good": "tok-a-good", "a_broke": "tok-a-broke", "b_broke": "tok-b-broke", "spare": "tok-spare"}


@dataclass
class Setup:
    settings: Settings
    cards: list[CardIn]


@pytest.fixture
def tenants_stack(env: Env, pg_db: str, gateway: str, tmp_path: Path) -> Iterator[Setup]:
    from simulator.app import create_app
    from simulator.state import SimState

    _, registry = make_sample(tmp_path / "cards", 6, seed=31)
    state = SimState(registry=load_registry(registry), seed=3)
    state.faults.update({"arrears": [f"acedata:{TOKENS['a_broke']}", f"acedata:{TOKENS['b_broke']}"]})
    with BackgroundServer(create_app(state, acedata_tokens=set(TOKENS.values()))) as sim:
        specs = [{"name": name, "acedata_token": token} for name, token in TOKENS.items()]
        settings = env(
            database_url=pg_db,
            provider="acedata",
            acedata_base_url=sim.url,
            accounts=json.dumps({"acedata": specs}),
            ratelimit_backend="local",
            requeue_after_s="0.2",
            api_shared_url="off",
        )
        upgrade(settings.database_url)
        fronts = sorted(p for p in (tmp_path / "cards").rglob("*front*") if p.suffix in (".jpg", ".png"))
        cards = [
            CardIn(
                external_ref=f"c{n}",
                front_image="data:image/jpeg;base64," + base64.b64encode(p.read_bytes()).decode(),
            )
            for n, p in enumerate(fronts)
        ]
        assert cards
        yield Setup(settings, cards)


def _principal(name: str, accounts: list[str]) -> Principal:
    _, key, _ = create_tenant(name, accounts=parse_accounts(accounts))
    principal = authenticate(key)
    assert principal is not None
    return principal


def _jobs(batch_id: int) -> list[Job]:
    with session_scope() as session:
        return list(session.scalars(select(Job).where(Job.batch_id == batch_id).order_by(Job.id)))


def _work(batch_ids: list[int], settings: Settings, until: float) -> None:
    """Process every open job of the batches until A's are terminal or the time is up."""
    while time.monotonic() < until:
        open_ids = [j.id for b in batch_ids for j in _jobs(b) if j.status not in TERMINAL_STATUSES]
        if not open_ids:
            return
        for job_id in open_ids:
            process_job(job_id, runtime())
        sweep(settings, lambda ids: None, queue_depth=lambda: 0)
        time.sleep(0.05)


def _attempt_accounts(batch_id: int) -> Counter[tuple[str, AttemptOutcome]]:
    with session_scope() as session:
        rows = session.execute(
            select(Attempt.account, Attempt.outcome).join(Job, Job.id == Attempt.job_id).where(
                Job.batch_id == batch_id
            )
        ).all()
    return Counter((r.account, r.outcome) for r in rows)


def test_each_tenant_is_billed_only_on_its_own_accounts(tenants_stack: Setup) -> None:
    settings, cards = tenants_stack.settings, tenants_stack.cards
    a = _principal("tenant-a", ["acedata:a_good", "acedata:a_broke"])
    b = _principal("tenant-b", ["acedata:b_broke"])
    assert a.accounts_for("acedata") == ("a_good", "a_broke")

    batch_a = submit_cards(a, cards, settings).batch_id
    batch_b = submit_cards(b, cards, settings).batch_id  # the same cards
    with session_scope() as session:
        assert session.get(Batch, batch_a).accounts == ["a_good", "a_broke"]  # type: ignore[union-attr]
        assert session.get(Batch, batch_b).accounts == ["b_broke"]  # type: ignore[union-attr]

    # A first: its answers exist before B's jobs look for a reusable one.
    _work([batch_a], settings, time.monotonic() + 60)
    assert {j.status for j in _jobs(batch_a)} <= {JobStatus.PASSED, JobStatus.NEGATIVE}
    # B's only account is in arrears: B's jobs wait, whichever good account exists.
    _work([batch_b], settings, time.monotonic() + 3)

    on_a = _attempt_accounts(batch_a)
    assert {account for account, _ in on_a} <= {"a_good", "a_broke"}
    assert on_a[("a_good", AttemptOutcome.ANSWERED)] == len(cards)  # fell over inside A only
    on_b = _attempt_accounts(batch_b)
    assert {account for account, _ in on_b} <= {"b_broke"}  # never a_good nor spare
    assert not any(outcome is AttemptOutcome.ANSWERED for _, outcome in on_b)
    jobs_b = _jobs(batch_b)
    assert {j.status for j in jobs_b} == {JobStatus.RETRY_WAIT}
    assert {j.error_class for j in jobs_b} == {ErrorClass.ACCOUNT_BLOCKED}
    assert not any(j.reused_from for j in jobs_b)  # A's paid answers are not B's to reuse


def test_a_single_card_carries_its_tenants_accounts(tenants_stack: Setup) -> None:
    settings, cards = tenants_stack.settings, tenants_stack.cards
    own = _principal("tenant-own", ["acedata:spare"])
    anyone = _principal("tenant-any", [])
    done = submit_single(own, cards[0], settings, publish=lambda ids: None)
    free = submit_single(anyone, cards[1], settings, publish=lambda ids: None)
    with session_scope() as session:
        assert session.get(Batch, done.batch_id).accounts == ["spare"]  # type: ignore[union-attr]
        assert session.get(Batch, free.batch_id).accounts is None  # type: ignore[union-attr]
    _work([done.batch_id], settings, time.monotonic() + 30)
    assert set(_attempt_accounts(done.batch_id)) == {("spare", AttemptOutcome.ANSWERED)}


def test_accounts_are_names_checked_against_the_deployment(tenants_stack: Setup) -> None:
    with pytest.raises(TenantError, match="no account nope"):
        create_tenant("typo", accounts=parse_accounts(["acedata:nope"]))
    with pytest.raises(TenantError, match="provider:account"):
        parse_accounts(["acedata"])
    create_tenant("later")
    set_accounts("later", "acedata", ["spare", "a_good"])
    listed = {t["name"]: t["accounts"] for t in list_tenants()}
    assert listed["later"] == {"acedata": ["spare", "a_good"]}
    assert "tok-" not in json.dumps(list_tenants())  # names only, never a secret
    set_accounts("later", "acedata", [])
    assert {t["name"]: t["accounts"] for t in list_tenants()}["later"] == {}
