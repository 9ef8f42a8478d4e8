"""Fixtures of the chaos tests: a private PostgreSQL cluster the test may stop and start."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chaos.helpers import PrivatePostgres


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started PostgreSQL cluster of this test's own (the shared server is untouched);
    stopped and removed afterwards, whatever the test did to it."""
    cluster = PrivatePostgres()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
