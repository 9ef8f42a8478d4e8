"""Property-based tests of the whole API from its own OpenAPI document (schemathesis, ASGI
transport, in-process): whatever is sent, no endpoint answers with a 5xx, and answers match
the documented statuses, headers and schemas.

Each operation is one test. The operations are driven with hypothesis directly rather than
through ``schemathesis.pytest.from_fixture`` (not usable with pytest 9), so the application
is built in a fixture, on a fresh SQLite database, as everywhere else."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import CheckFunction
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import positive_data_acceptance
from schemathesis.specs.openapi.schemas import OpenApiSchema

from backend.api import create_app
from tests.api.conftest import ADMIN, settings_for

MAX_EXAMPLES = 30
#: Agents' input models may validate more than their JSON Schema says (ReviewInput refuses
#: blank code, a diff that does not parse), so a schema-valid task may still be a 422; and a
#: cursor is an opaque token the service issued, so a made-up one is a 422 too.
EXCLUDED: dict[str, Sequence[CheckFunction]] = {
    "POST /v1/tasks": [positive_data_acceptance],
    "GET /v1/tasks": [positive_data_acceptance],
    "GET /v1/admin/calls": [positive_data_acceptance],
}

OPERATIONS = [
    "GET /healthz",
    "GET /readyz",
    "POST /v1/tasks",
    "GET /v1/tasks",
    "GET /v1/tasks/{task_id}",
    "POST /v1/tasks/{task_id}/cancel",
    "GET /v1/tasks/{task_id}/calls",
    "GET /v1/admin/breakers",
    "GET /v1/admin/breakers/{key}",
    "POST /v1/admin/breakers/{key}/reset",
    "POST /v1/admin/breakers/{key}/open",
    "GET /v1/admin/calls",
    "GET /v1/admin/stats",
]


@pytest.fixture
def api_schema(sqlite_url: str) -> Iterator[OpenApiSchema]:
    app = create_app(settings_for(sqlite_url, max_code_bytes=64 * 1024))
    try:
        loaded = schemathesis.openapi.from_asgi("/openapi.json", app)
        assert isinstance(loaded, OpenApiSchema)
        yield loaded
    finally:
        shutdown_lifespans()


def test_every_operation_is_covered(api_schema: OpenApiSchema) -> None:
    labels = {result.ok().label for result in api_schema.get_all_operations()}  # type: ignore[union-attr]
    assert labels == set(OPERATIONS)


@pytest.mark.parametrize("label", OPERATIONS)
def test_no_server_error_and_documented_answers(api_schema: OpenApiSchema, label: str) -> None:
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None

    @given(case=operation.as_strategy())
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def check(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(headers=ADMIN, excluded_checks=list(EXCLUDED.get(label, ())))

    check()
