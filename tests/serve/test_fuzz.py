"""Schema-based fuzzing: schemathesis generates requests from the API's own OpenAPI document."""

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error


def test_no_generated_request_gets_a_server_error(make_client):
    schema = schemathesis.openapi.from_asgi("/openapi.json", make_client().app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/diagnose", "/v1/chat/completions", "/api/chat", "/api/generate"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case):
            case.call_and_validate(checks=[not_a_server_error])

        fuzz()
