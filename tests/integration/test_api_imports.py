"""Contact import input (pure): CSV reading and per-row validation."""

from __future__ import annotations

import pytest

from hitcall_pbx.api.imports import parse_csv, validate_rows
from hitcall_pbx.errors import ValidationFailed


def test_csv_columns_extra_and_line_numbers() -> None:
    rows, errors = parse_csv('Phone;Name;Region\n040 1234567;"Aino; A";north\n\n0501234567;;\n')
    assert errors == []
    assert rows == [
        (2, {"phone": "040 1234567", "name": "Aino; A", "extra": {"region": "north"}}),
        (4, {"phone": "0501234567"}),
    ]


def test_csv_multiline_cell_keeps_real_line_numbers() -> None:
    rows, errors = parse_csv('phone,name\n0401234567,"two\nlines"\n0501234567,x\n')
    assert [r[0] for r in rows] == [3, 4] and errors == []


def test_csv_unreadable_lines_are_reported() -> None:
    rows, errors = parse_csv("phone,name\n0401234567,a,extra\n0501234567,b\n")
    assert [r[0] for r in rows] == [3]
    assert [(e.row, e.field) for e in errors] == [(2, "row")]


@pytest.mark.parametrize("text", ["", "name,email\nx,y\n", "phone,phone\n1,2\n", "phone,,x\n1,2,3\n"])
def test_csv_header_problems(text: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        parse_csv(text)
    assert err.value.details["field"] == "csv"


def test_rows_are_normalised_and_duplicates_reported() -> None:
    valid, errors = validate_rows(
        [
            (1, {"phone": "040 1234567", "external_id": "a"}),
            (2, {"phone": "+358401234567"}),
            (3, {"phone": "0501234567", "external_id": "a"}),
            (4, {"phone": "12", "email": "nope", "timezone": "Mars/Base"}),
            (5, {"phone": "0451234567", "marketing_permission": "yes", "unknown": 1}),
            (6, {"phone": "0451234568", "marketing_permission": "yes"}),
        ]
    )
    assert [(v.row, v.contact.phone) for v in valid] == [(1, "+358401234567"), (6, "+358451234568")]
    assert valid[1].contact.marketing_permission is True
    assert sorted((e.row, e.field) for e in errors) == [
        (2, "phone"),
        (3, "external_id"),
        (4, "email"),
        (4, "phone"),
        (4, "timezone"),
        (5, "unknown"),
    ]
