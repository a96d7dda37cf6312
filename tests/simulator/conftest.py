"""The simulator fixtures of the provider contract tests: one server pair per module."""

import pytest

from tests.providers.conftest import Sim, _shared_servers, shared_sim

__all__ = ["_shared_servers", "shared_sim", "sim"]


@pytest.fixture
def sim(shared_sim: Sim) -> Sim:
    return shared_sim
