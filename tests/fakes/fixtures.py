"""Pytest fixtures for the fake provider server (register with ``pytest_plugins``).

``provider_server``: a started ``FakeProviderServer`` per test (fresh script and counters),
stopped afterwards. Point the SDKs at ``provider_server.openai_base_url`` (ends in ``/v1``) and
``provider_server.anthropic_base_url``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.provider_server import FakeProviderServer


@pytest.fixture
def provider_server() -> Iterator[FakeProviderServer]:
    server = FakeProviderServer().start()
    try:
        yield server
    finally:
        server.stop()
    if server.errors:
        raise AssertionError(f"the fake provider server failed internally: {server.errors!r}")
