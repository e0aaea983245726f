"""FHIR JSON text: how deep it nests, counted outside strings."""

import pytest
from cxrwatch.clinical.fhir_json import fhir_document, nesting_depth
from cxrwatch.core.errors import InvalidInput


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"1", 0),
        (b'"[{"', 0),
        (b"[]", 1),
        (b'{"a": [{}, []], "b": {}}', 3),
        (b'["[[[", "\\"]]]]", {"b": "{{"}]', 2),
        (b'{"a": "\\\\", "b": [[1]]}', 3),
        (b'{"a": "\\\\\\"[[[["}', 1),
    ],
)
def test_nesting_depth(text, depth):
    assert nesting_depth(text) == depth


def test_a_document_with_few_brackets_is_not_scanned_but_many_are():
    # 101 brackets in a string: the count says "maybe deep", the scan says 1.
    wide = b'{"text": "' + b"[" * 101 + b'"}'
    assert fhir_document(wide) == {"text": "[" * 101}
    deep = b'{"a": ' + b"[" * 100 + b"]" * 100 + b"}"
    with pytest.raises(InvalidInput, match="deeper than 100 levels"):
        fhir_document(deep)


def test_exactly_100_levels_is_a_document():
    text = b'{"a": ' + b"[" * 99 + b"]" * 99 + b"}"
    assert nesting_depth(text) == 100
    assert list(fhir_document(text)) == ["a"]


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (b"[]", "an array"),
        (b'"Observation"', "a string"),
        (b"7.5", "a number"),
        (b"true", "true or false"),
        (b"null", "null"),
    ],
)
def test_a_document_that_is_not_an_object_is_named_in_json_terms(text, kind):
    with pytest.raises(InvalidInput) as refused:
        fhir_document(text)
    assert str(refused.value) == f"a FHIR resource is a JSON object, not {kind}"


def test_a_number_too_long_to_read_is_refused_plainly():
    # Python reads integers of at most 4300 digits from text by default.
    text = b'{"valueInteger": ' + b"9" * 5000 + b"}"
    with pytest.raises(InvalidInput) as refused:
        fhir_document(text)
    assert str(refused.value) == (
        "a number has more than 4300 digits; no FHIR value needs that many"
    )
