"""The gate in front of every provider call: the account's circuit, then its rate.

``AccountGate.enter`` asks the circuit breaker (``workers.circuit``) whether the
account may be called at all, then the shared limiter (``workers.ratelimit``) for a
slot; the returned ``Ticket`` wraps the call and feeds its outcome back to both.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

from idbatch import metrics
from idbatch.logging import get_logger
from idbatch.providers import errors
from idbatch.settings import Settings
from workers.circuit import Admission, CircuitBreaker
from workers.ratelimit import GRANTED, MAX_LATE_RETRIES, TOO_FAR, Limiter, Policy, build_limiter, policy_for

log = get_logger(__name__)


@dataclass
class Ticket:
    """Permission for one provider call; ``with ticket:`` around the call feeds back its outcome.

    ``defer_s`` set means: do not call, put the job back and try again after that long.
    """

    gate: AccountGate | None
    provider: str
    account: str
    defer_s: float | None = None
    reason: str = ""
    error_class: Literal["account_blocked", "throttled"] | None = None
    lease_id: str | None = None
    probing: bool = False
    rate: float = 0.0
    policy: Policy = field(default_factory=Policy)

    def __enter__(self) -> Ticket:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.gate is not None:
            self.gate.settle(self, exc)


class Line:
    """A process's turn at an account's shared schedule: ``seats`` at a time, first come first served.

    A seat is handed from the thread leaving straight to the first one waiting (no
    barging, one thread woken per seat); an ``urgent`` arrival waits at the front.
    """

    def __init__(self, seats: int) -> None:
        self._lock = threading.Lock()
        self._free = seats
        self._waiting: deque[threading.Event] = deque()

    def enter(self, timeout_s: float, urgent: bool = False) -> bool:
        """Take a seat, waiting up to ``timeout_s``; False if none came."""
        with self._lock:
            if self._free > 0 and not self._waiting:
                self._free -= 1
                return True
            turn = threading.Event()
            if urgent:
                self._waiting.appendleft(turn)
            else:
                self._waiting.append(turn)
        try:
            if turn.wait(timeout_s):
                return True
        except BaseException:  # interrupted while waiting: never leave a dead entry to hand a seat to
            with self._lock:
                handed = turn.is_set()
                if not handed:
                    self._waiting.remove(turn)
            if handed:
                self.leave()
            raise
        with self._lock:
            if turn.is_set():  # handed over as the wait ran out: it is ours
                return True
            self._waiting.remove(turn)
            return False

    def leave(self) -> None:
        with self._lock:
            if self._waiting:
                self._waiting.popleft().set()
            else:
                self._free += 1


class AccountGate:
    """Circuit breaker + limiter in front of every provider call of this process."""

    def __init__(
        self,
        settings: Settings,
        limiter: Limiter | None,
        circuit: CircuitBreaker,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.limiter = limiter
        self.circuit = circuit
        self._sleep = sleep
        self._clock = clock
        self._policies: dict[tuple[str, str], Policy] = {}
        self._held = threading.local()  # .on: holding releases; .lease: (key, lease id) held
        self._lines: dict[str, Line] = {}
        self._lines_lock = threading.Lock()

    @contextmanager
    def holding_releases(self) -> Iterator[None]:
        """Within, a call's in-flight lease is released by this thread's next acquire.

        A worker thread running a group of jobs (``workers.tasks.run_group``) calls the
        same account again a job later: its previous call's release then rides on that
        acquire (one script call per job instead of two; the release was ≈ 4 % of a
        job's CPU, issue 17). The cap stays conservative: a held lease belongs to a call
        that has ended, so the in-flight count can only overstate, by at most one lease
        per thread, for one job's database work. Leaving the block releases what is held,
        as does an acquire on another account; a thread that dies leaves its lease to
        expire (``lease_s``), as a thread dying mid-call always did.
        """
        before = getattr(self._held, "on", False)
        self._held.on = True
        try:
            yield
        finally:
            self._held.on = before
            if not before:
                try:
                    self._release_held()
                except Exception as exc:  # noqa: BLE001 - the lease expires by itself (lease_s)
                    log.warning("could not release an in-flight lease", error=str(exc))

    def _release_held(self, unless_key: str | None = None) -> str | None:
        """Release the held lease now, or hand it back if it is ``unless_key``'s (to fold in)."""
        held: tuple[str, str] | None = getattr(self._held, "lease", None)
        if held is None:
            return None
        self._held.lease = None
        if held[0] == unless_key:
            return held[1]
        if self.limiter is not None:
            self.limiter.release(*held)
        return None

    def policy(self, provider: str, account: str) -> Policy:
        key = (provider, account)
        if key not in self._policies:
            self._policies[key] = policy_for(self.settings, provider, account)
        return self._policies[key]

    def enter_any(self, provider: str, accounts: Sequence[str], calls: int = 1) -> Ticket:
        """Admit ``calls`` calls on one of the provider's accounts, or say how long to defer the job.

        ``calls`` is how many calls the slot is worth: the schedule moves on by
        ``calls / rate``. The worker asks for one and takes a further slot for each
        further call of the job (``next_call``).

        Accounts are tried in a random order weighted by quota (over many calls each gets
        a share in proportion to its quota), skipping an open circuit or an account with
        no slot soon; one blocked account thus never stops the others.
        """
        if len(accounts) == 1:
            return self.enter(provider, accounts[0], calls)
        quotas = [self.policy(provider, a).quota for a in accounts]
        ref = max(quotas) or 1.0
        # Efraimidis-Spirakis: sort by u ** (1/w), a weighted draw without replacement.
        keys = [random.random() ** (1.0 / (q or ref)) for q in quotas]
        order = [a for _, a in sorted(zip(keys, accounts, strict=True), reverse=True)]
        best: Ticket | None = None
        for account in order:
            ticket = self.enter(provider, account, calls)
            if ticket.defer_s is None:
                return ticket
            if best is None or ticket.defer_s < (best.defer_s or 0.0):
                best = ticket
        assert best is not None
        return best

    def enter(self, provider: str, account: str, calls: int = 1) -> Ticket:
        """Admit one call, sleeping briefly for its token; or say how long to defer the job."""
        decision = self.circuit.admit(provider, account)
        if decision.admission is Admission.DENY:
            return Ticket(
                None,
                provider,
                account,
                defer_s=decision.retry_in_s,
                reason=decision.reason,
                error_class="account_blocked",
            )
        ticket = Ticket(self, provider, account, probing=decision.admission is Admission.PROBE)
        if ticket.probing:
            metrics.circuit_state(provider, account, metrics.CIRCUIT_HALF_OPEN)
        if self.limiter is None:
            return ticket
        ticket.policy = self.policy(provider, account)
        release = self._release_held(unless_key=f"{provider}:{account}")  # this thread's last call
        return self._admit(ticket, calls, release)

    def next_call(self, ticket: Ticket) -> None:
        """Take the rate slot for the next call of the same job, on the ticket's account.

        A two-sided card sends FRONT, then BACK once FRONT has answered. One slot worth
        both calls (issue 17's first shape) left BACK's arrival to FRONT's latency: the
        BACKs landed at random points between the slots, and a strict sliding window
        counted more than its quota in a second (31-37 refused calls per OCR or Aliyun
        run). So each call has a slot of its own, taken just before it is sent.

        The ticket's in-flight lease is swapped for the new slot's in the same script
        call (the thread holds one call at a time). The circuit is not asked again: the
        account has just answered. Raises ``errors.Deferred`` when no slot comes soon
        enough; nothing has been sent for that call then.
        """
        if self.limiter is None:
            return
        release, ticket.lease_id = ticket.lease_id, None
        gate = ticket.gate
        try:
            self._admit(ticket, 1, release, urgent=True)
        except Exception as exc:
            # FRONT is paid: a limiter failure here must reach the adapter as a provider
            # error, so FRONT's answer is kept (not a crash that would pay for it again).
            # The swapped lease, if the script never ran, expires by itself (lease_s).
            log.warning("rate limiter failed before a card's next call", error=type(exc).__name__)
            raise errors.Deferred(
                "next call: the rate limiter failed", side="back", retry_after_s=1.0
            ) from exc
        if ticket.defer_s is not None:
            # The ticket still settles (``with ticket``): a probing FRONT's answer closes the circuit.
            ticket.gate = gate
            raise errors.Deferred(f"next call: {ticket.reason}", side="back", retry_after_s=ticket.defer_s)

    def _line(self, key: str) -> Line | None:
        seats = self.settings.ratelimit_local_slots
        if seats <= 0:
            return None
        with self._lines_lock:
            line = self._lines.get(key)
            if line is None:
                line = self._lines[key] = Line(seats)
            return line

    def _admit(self, ticket: Ticket, calls: int, release: str | None, urgent: bool = False) -> Ticket:
        """The limiter's part of admission, taken in turn with this process's other threads.

        Only ``ratelimit_local_slots`` threads of a process hold a reservation in the
        account's shared schedule at a time; the others wait for a seat here, asleep
        (no Redis call, no CPU). Without the line every thread reserved a slot as far
        ahead as ``max_wait_s``: 96 threads at 20 calls/s kept the schedule 2 s ahead,
        most threads were refused and deferred the job (a database and broker round trip
        each, 15,740 for 1,200 cards), and a thread that woke late found a second of slots
        already handed out behind it, so it had to void its slot rather than shift the
        schedule (4,322 voided): the OCR run at the default thread count nearly stopped.
        With the line, the schedule is never more than processes x seats slots ahead, so
        a late wake shifts instead of voiding, and a refusal means a real pause (a
        Retry-After, a lowered rate), not too many threads.

        A seat is held from the request to the end of the sleep, never across the call.
        """
        assert self.limiter is not None
        key = f"{ticket.provider}:{ticket.account}"
        line = self._line(key)
        if line is None:
            return self._reserve(ticket, calls, release)
        # A card's later call (BACK, its FRONT paid) goes first: it finishes a card.
        if not line.enter(self.settings.ratelimit_line_wait_s, urgent=urgent):
            if release is not None:
                self.limiter.release(key, release)
            self.limiter.note(key, "deferred_line")
            return self._deferred(ticket, 1.0, "no turn in this worker's line for the account's rate")
        try:
            return self._reserve(ticket, calls, release)
        finally:
            line.leave()

    def _reserve(self, ticket: Ticket, calls: int, release: str | None) -> Ticket:
        """A slot worth ``calls`` calls in the shared schedule, slept for; or a deferral."""
        assert self.limiter is not None
        provider, account, policy = ticket.provider, ticket.account, ticket.policy
        key = f"{provider}:{account}"
        for tries_left in range(MAX_LATE_RETRIES, -1, -1):
            lease_id = uuid.uuid4().hex
            # The slot is at (script time + wait); the script ran after this moment, so
            # measuring lateness from here also counts a slow reply from Redis.
            planned = self._clock()
            grant = self.limiter.acquire(key, policy, lease_id, calls, release=release)
            release = None
            planned += grant.wait_s
            ticket.rate = grant.rate
            if grant.status != GRANTED:
                what = "next token" if grant.status == TOO_FAR else "in-flight slot"
                self.limiter.note(key, "deferred_rate" if grant.status == TOO_FAR else "deferred_in_flight")
                return self._deferred(ticket, grant.wait_s, f"{what} in {grant.wait_s:.2f}s")
            if grant.wait_s > 0:
                self._sleep(grant.wait_s)
            late = self._clock() - planned
            if policy.ceiling <= 0 or late <= policy.late_s:
                ticket.lease_id = lease_id if policy.max_in_flight > 0 else None
                metrics.limiter_granted(provider, account, grant.wait_s, grant.rate)
                return ticket
            # Woken too late (a loaded machine): calling now could put this call and the
            # one a window later closer together than the provider counts. Move the rest
            # of the schedule back by the delay if that is still possible; otherwise give
            # the slot up (a hole in the schedule costs one token, a refused call more).
            # Lateness up to late_s is budgeted in the headroom; only the excess moves.
            # One script call: shifts or gives the slot up (releasing its lease), and counts which.
            lease = lease_id if policy.max_in_flight > 0 else None
            if self.limiter.late(key, policy, grant.start, late - policy.late_s, lease):
                ticket.lease_id = lease
                metrics.limiter_granted(provider, account, grant.wait_s, grant.rate)
                return ticket
            log.debug("rate slot voided", account=key, late_ms=round(late * 1000, 1), tries_left=tries_left)
        self.limiter.note(key, "deferred_late")
        return self._deferred(ticket, 0.5, "woken too late for its rate slot, repeatedly")

    @staticmethod
    def _deferred(ticket: Ticket, wait_s: float, reason: str) -> Ticket:
        ticket.gate = None
        # Jitter so that deferred jobs come back spread out, not as one wave.
        ticket.defer_s = max(0.05, wait_s) * random.uniform(1.0, 1.25)
        ticket.reason = reason
        ticket.error_class = "throttled"
        return ticket

    def settle(self, ticket: Ticket, exc: BaseException | None) -> None:
        """Release the slot and feed the outcome back to the limiter and the circuit."""
        key = f"{ticket.provider}:{ticket.account}"
        limiter = self.limiter
        if limiter is not None and ticket.lease_id is not None:
            if getattr(self._held, "on", False):
                self._release_held()  # never more than one held per thread
                self._held.lease = (key, ticket.lease_id)
            else:
                limiter.release(key, ticket.lease_id)
        if isinstance(exc, errors.RateLimited):
            if limiter is not None:
                rate = limiter.throttled(key, ticket.policy, exc.retry_after_s)
                log.info(
                    "provider throttled", account=key, rate=round(rate, 2), retry_after=exc.retry_after_s
                )
        elif isinstance(exc, errors.AccountBlocked):
            self.circuit.blocked(ticket.provider, ticket.account, exc.message, exc.provider_code)
            metrics.circuit_state(ticket.provider, ticket.account, metrics.CIRCUIT_OPEN)
            log.error("account circuit opened", account=key, code=exc.provider_code)
        elif exc is None or isinstance(exc, errors.ItemRejected | errors.Deferred):
            # An answer (even "bad item"; a Deferred comes after FRONT answered) proves the account works.
            if ticket.probing:
                self.circuit.probe_answered(ticket.provider, ticket.account)
                metrics.circuit_state(ticket.provider, ticket.account, metrics.CIRCUIT_CLOSED)
                log.warning("account circuit closed by probe", account=key)
            if exc is None and limiter is not None and 0 < ticket.rate < ticket.policy.ceiling:
                limiter.success(key, ticket.policy)


def build_gate(settings: Settings) -> AccountGate:
    return AccountGate(
        settings,
        build_limiter(settings),
        CircuitBreaker(probe_after_s=settings.circuit_probe_s, cache_s=settings.circuit_cache_s),
    )
