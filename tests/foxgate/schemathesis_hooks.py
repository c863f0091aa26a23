"""Schemathesis hooks for tests/foxgate/test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

The schema cannot list the model catalog, which lives in the database: a schema-valid request naming a
model that does not exist is rightly refused (422 model_not_found). A body generated to be valid therefore
names the model the test set up; a body generated to be invalid keeps whatever schemathesis made."""

from typing import Any

import schemathesis
from schemathesis.core.parameters import ParameterLocation

MODEL = "fake-model"


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    if (
        case.operation.path.endswith(("/llm/generations", "/chat/completions", "/messages"))
        and isinstance(case.body, dict)
        and isinstance(case.body.get("model"), str)
        and not case.meta.is_negative_at(ParameterLocation.BODY)
    ):
        case.body["model"] = MODEL
    return case
