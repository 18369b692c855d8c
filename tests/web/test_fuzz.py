"""The API fuzzed from its own OpenAPI document (schemathesis): no input makes it fail with a 500.

Fuzzed as a viewer, against the real Redis and database: every read gets generated ids,
filters and bodies; actions answer 403 (or 422 for a body they cannot read) and never run,
so the fuzzing sends no work to the workers.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.web.conftest import bearer


@pytest.fixture
def api_schema(app, dashboard_settings):  # type: ignore[no-untyped-def]
    """The API's OpenAPI document, read (with credentials) from a fresh dashboard app."""
    from actors.web import create_app

    dashboard = create_app(dashboard_settings, app.broker)
    return schemathesis.openapi.from_asgi("/api/openapi.json", dashboard, headers=bearer("viewer"))


def test_no_input_makes_the_api_fail_with_a_server_error(api_schema):
    fuzzed = []
    for found in api_schema.get_all_operations():
        operation = found.ok()
        if operation.path.endswith("/events"):
            continue  # streams run until their tree ends; their reads are fuzzed at /api/jobs/{any_id}

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def call(case):  # type: ignore[no-untyped-def]
            case.call_and_validate(headers=bearer("viewer"), checks=[not_a_server_error])

        call()
        fuzzed.append(f"{operation.method.upper()} {operation.path}")
    assert len(fuzzed) >= 10, fuzzed
