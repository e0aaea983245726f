"""FHIR JSON text read into a document: valid JSON, one object, not too deep.

The nesting limit protects what reads the document after it: Python's JSON
decoder gives up with a ``RecursionError`` near a thousand levels, and the
FHIR library's validation recurses through the models about four frames per
level, so a Bundle some 250 levels deep already exhausts the stack. Real FHIR
resources stay far below :data:`MAX_DEPTH` (a Bundle entry's Observation
component's coding is 9 levels deep; each nested extension adds 2).
"""

import json
import re
import sys
from itertools import accumulate
from typing import Any

from cxrwatch.core.errors import InvalidInput

MAX_DEPTH = 100
_JSON_KINDS = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true or false",
    type(None): "null",
}
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
# The change of depth each byte of a bracket-only text makes.
_STEPS = tuple(1 if b in b"[{" else -1 if b in b"]}" else 0 for b in range(256))


def fhir_document(raw: bytes) -> dict[str, Any]:
    """The JSON object of a FHIR message.

    Raises
    ------
    InvalidInput
        If the text is not JSON, is nested deeper than :data:`MAX_DEPTH`
        arrays and objects, or is not an object.
    """
    try:
        document = json.loads(raw)
    except RecursionError as exc:
        raise _too_deep() from exc
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"not valid JSON: {exc}") from exc
    except ValueError as exc:  # the only other: an integer too long to read
        raise InvalidInput(
            f"a number has more than {sys.get_int_max_str_digits()} digits; "
            "no FHIR value needs that many"
        ) from exc
    # No more brackets than the limit cannot nest deeper: most messages stop here.
    brackets = raw.count(b"[") + raw.count(b"{")
    if brackets > MAX_DEPTH and nesting_depth(raw) > MAX_DEPTH:
        raise _too_deep()
    if not isinstance(document, dict):
        raise InvalidInput(
            f"a FHIR resource is a JSON object, not {_JSON_KINDS[type(document)]}"
        )
    return document


def nesting_depth(raw: bytes) -> int:
    """How deep arrays and objects nest in valid JSON text (0 for a scalar),
    counting the brackets outside strings."""
    structure = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEPS.__getitem__, structure)), default=0)


def _too_deep() -> InvalidInput:
    return InvalidInput(
        f"JSON nested deeper than {MAX_DEPTH} levels of arrays and objects; "
        "no FHIR resource needs that many"
    )
