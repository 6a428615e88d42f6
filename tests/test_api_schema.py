"""Property-based tests of the API against its own OpenAPI document (schemathesis): no 5xx,
answers that match the documented status codes, media types and schemas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from tests.api_helpers import Served, build


@pytest.fixture(scope="module")
def served_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    found = build(tmp_path_factory.mktemp("schema"))
    yield found
    found.ws.close()


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE,
                                  schemathesis.GenerationMode.NEGATIVE])
def test_api_matches_its_schema(served_api: Served, mode: schemathesis.GenerationMode) -> None:
    """Every operation, with generated valid and invalid requests (schemathesis' pytest
    plugin does not support this pytest yet, so the operations are walked here)."""
    auth = {"Authorization": f"Bearer {served_api.keys['admin']}"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", served_api.app, headers=auth)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy(mode))
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck),
                  derandomize=True, database=None)
        def run(case: schemathesis.Case) -> None:
            # Schema-valid is not always meaningful (a date string that is no date): the
            # heuristic that every schema-valid request must succeed is left out.
            case.call_and_validate(headers=auth, excluded_checks=[
                schemathesis.checks.positive_data_acceptance])

        try:
            run()
        except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
            assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {exc}"[:2000])
    assert operations >= 35
    assert not failures, "\n\n".join(failures)


def test_schema_lists_every_area(served_api: Served, tmp_path: Path) -> None:
    paths = served_api.app.openapi()["paths"]  # type: ignore[attr-defined]
    for prefix in ("/v1/customers", "/v1/imports", "/v1/segments", "/v1/snapshots",
                   "/v1/values", "/v1/users", "/v1/keys", "/v1/audit", "/v1/privacy",
                   "/v1/jobs", "/v1/quality"):
        assert any(p.startswith(prefix) for p in paths), prefix
