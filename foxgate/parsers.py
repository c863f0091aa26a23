import json
from typing import Any

from django.conf import settings
from rest_framework.parsers import JSONParser

from foxgate.errors import InvalidRequest, RequestTooLarge


class LimitedJSONParser(JSONParser):
    """JSON bodies up to FOXGATE_MAX_REQUEST_BYTES.

    DRF reads the request stream directly, past Django's own upload limit, so the cap is enforced here:
    on the declared length first, then on what is actually read (a chunked body declares none)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        limit = settings.MAX_REQUEST_BYTES
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and declared.isdigit() and int(declared) > limit:
            raise RequestTooLarge(limit)
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise RequestTooLarge(limit)
        try:
            return json.loads(body, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidRequest(f"The request body is not valid JSON: {exc}") from None
        except RecursionError:
            raise InvalidRequest("The request body is not valid JSON: it nests too deeply.") from None


def _reject_constant(name: str) -> None:
    # Python's json accepts NaN and Infinity; JSON does not, and no field here can take them.
    raise ValueError(f"{name} is not a JSON value")
