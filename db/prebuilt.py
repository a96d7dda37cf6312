"""Executing the hot path's prebuilt statements from their compiled form.

``Connection.execute(statement)`` looks a statement up in SQLAlchemy's compiled cache on
every call: it derives the statement's cache key (a walk of its clauses), hashes it and
takes the cache's lock-free LRU. For the half-dozen statements a worker runs per job,
each built once (``functools.cache`` in ``db.jobs``), that lookup was about a sixth of
SQLAlchemy's share of a job's CPU (issue 17 profile: ``_compile_w_cache`` and
``LRUCache.get``). This keeps the ``Compiled`` object per (statement, dialect, parameter
names, executemany) itself, exactly the parts of SQLAlchemy's own cache key that vary
here, and executes it: ``Connection.execute`` of a ``Compiled`` runs the same execution
context (bind and result processing, expanding ``IN`` lists, events, tracing) and wraps
driver errors the same way (``IntegrityError``, a dropped connection invalidated), so
callers and ``workers.durable.durably`` see no difference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, CursorResult
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import Compiled
from sqlalchemy.sql.elements import ClauseElement

Params = Mapping[str, Any] | Sequence[Mapping[str, Any]]

# (id(statement), dialect, parameter names, executemany) -> (statement, compiled). The
# statement is kept in the value so that its id cannot be reused by another object.
_compiled: dict[tuple[int, Dialect, tuple[str, ...], bool], tuple[ClauseElement, Compiled]] = {}
_MAX = 2_000  # statements x dialects x parameter sets; tests create many engines


def execute(conn: Connection, statement: ClauseElement, params: Params) -> CursorResult[Any]:
    """``conn.execute(statement, params)`` through a compiled form kept per statement.

    Only for statements built once and reused (a new statement object each call would
    only fill this dict).
    """
    rows = [params] if isinstance(params, Mapping) else list(params)
    many = len(rows) > 1
    names = tuple(sorted(rows[0])) if rows else ()
    key = (id(statement), conn.dialect, names, many)
    hit = _compiled.get(key)
    if hit is None or hit[0] is not statement:
        if len(_compiled) >= _MAX:
            _compiled.clear()
        # as Connection.execute compiles it: the first row's keys, executemany or not
        compiled = statement.compile(dialect=conn.dialect, column_keys=list(names), for_executemany=many)
        hit = _compiled[key] = (statement, compiled)
    return conn.execute(hit[1], params)  # type: ignore[call-overload,no-any-return]
