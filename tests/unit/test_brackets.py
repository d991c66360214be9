from typing import Any

import pytest

from gateway.api.brackets import MAX_DEPTH, BracketError, bracketed


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ([], None),
        ([("metadata", '{"a": 1}'), ("type", "text/plain")], None),
        ([("metadata[purpose]", "x"), ("metadata[n]", "1")], {"purpose": "x", "n": "1"}),
        ([("metadata[a][b][c]", "deep"), ("metadata[a][d]", "")], {"a": {"b": {"c": "deep"}, "d": ""}}),
        ([("metadata[tags][]", "a"), ("metadata[tags][]", "b")], {"tags": ["a", "b"]}),
        ([("metadata[rows][][x]", "1"), ("metadata[rows][][x]", "2")], {"rows": [{"x": "1"}, {"x": "2"}]}),
        ([("metadata[grid][][]", "1")], {"grid": [["1"]]}),
        ([("metadata[with space]", "ok"), ("metadata[é]", "ü")], {"with space": "ok", "é": "ü"}),
        # Not bracketed fields of `metadata`: other names, stray text, unclosed brackets.
        ([("metadatas[a]", "x"), ("metadata[a]x", "y"), ("metadata[a", "z"), ("metadata[a]]", "w")], None),
    ],
)
def test_bracketed_fields_make_nested_objects_and_lists_of_strings(
    fields: list[tuple[str, str]], expected: dict[str, Any] | None
) -> None:
    assert bracketed("metadata", fields) == expected


@pytest.mark.parametrize(
    "fields",
    [
        [("metadata[a]", "1"), ("metadata[a]", "2")],
        [("metadata[a]", "1"), ("metadata[a][b]", "2")],
        [("metadata[a][b]", "1"), ("metadata[a]", "2")],
        [("metadata[a][]", "1"), ("metadata[a][b]", "2")],
        [("metadata[]", "x")],
        [("metadata[][a]", "x")],
        [("metadata" + "[a]" * (MAX_DEPTH + 1), "x")],
    ],
)
def test_fields_that_describe_no_single_object_are_refused(fields: list[tuple[str, str]]) -> None:
    with pytest.raises(BracketError):
        bracketed("metadata", fields)
