"""Property-based requests generated from the service's own OpenAPI schema (valid and invalid
bodies, odd ids, boundary values): never a 5xx, and every answer matches the documented
response schema and status codes. The number of cases is bounded to keep the suite fast.

(The cases are drawn per operation inside one test: schemathesis' lazy pytest fixture loader
does not work with this pytest version, and the app needs a trained run from a fixture.)"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_schema_conformance,
                                 status_code_conformance)
from schemathesis.generation import GenerationMode

from pitrec.serve import Recommender
from pitrec.serve.app import create_app

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 10  # per operation and generation mode


def test_the_api_never_fails_and_keeps_its_schema(trained_runs, tmp_path):
    rec = Recommender.load(trained_runs("pit"), state_dir=tmp_path / "state")
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(rec))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} == {
        "POST /recommend", "POST /recommend/batch", "POST /items", "POST /feedback", "GET /items/{item_id}",
        "GET /health", "GET /stats"}
    calls = []
    for operation in operations:
        has_input = operation.method.upper() == "POST" or "{" in operation.path
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if has_input else (GenerationMode.POSITIVE,):
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def check(case) -> None:
                calls.append(case.call_and_validate(checks=CHECKS).status_code)

            check()
    assert len(calls) >= 40 and any(code < 300 for code in calls) and any(code == 422 for code in calls)
