"""A fuzz run of the API from its own OpenAPI document (schemathesis, in process): generated
requests for every operation, with and without a valid key; none may get a 5xx, and every answer
must match the schema the document declares for it (issue 19)."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the test extras")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402

from serve_support import API_KEY, make_checkpoint  # noqa: E402
from tumorlens.serve.app import create_app  # noqa: E402
from tumorlens.serve.settings import ServeSettings  # noqa: E402


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    app = create_app(ServeSettings(model_path=make_checkpoint(tmp / "m.pt", confident_class=1), api_keys=(API_KEY,),
                                   db_url=f"sqlite:///{tmp / 'a.sqlite'}", explain_methods=("gradcam", "eigencam")))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_no_server_error_and_answers_match_the_schema(api_schema):
    # Driven through hypothesis directly (schemathesis's pytest plugin does not load under this
    # pytest): every operation of the document, 10 generated cases each, with a key and without.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 6
    for operation in operations:
        @settings(max_examples=10, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def fuzz(case):
            for headers in ({"X-API-Key": API_KEY}, {}):
                case.call_and_validate(headers=headers, checks=[not_a_server_error, response_schema_conformance])

        fuzz()
