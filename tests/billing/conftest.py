"""The durability fixtures (a Postgres database per test, the simulator, a card sample)."""

from tests.durability.conftest import pg_db, stack

__all__ = ["pg_db", "stack"]
