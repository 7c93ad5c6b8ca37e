"""Contact import input (pure): CSV parsing and per-row validation with an error report."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import Field, TypeAdapter, ValidationError

from ..errors import ValidationFailed
from .types import Email, In, Phone, TimeZone

MAX_ROWS = 100_000
COLUMNS = ("phone", "external_id", "name", "title", "email", "organisation", "timezone", "marketing_permission")


class ContactIn(In):
    phone: Phone
    external_id: str | None = Field(
        default=None, min_length=1, max_length=200, description="the CRM's id, unique per list"
    )
    name: str | None = Field(default=None, max_length=200)
    title: str | None = Field(default=None, max_length=200)
    email: Email | None = None
    organisation: str | None = Field(default=None, max_length=200)
    timezone: TimeZone | None = Field(default=None, description="overrides the zone derived from the number")
    marketing_permission: bool = False
    extra: dict[str, Any] = Field(default_factory=dict, description="any further CRM fields, carried in webhooks")


_ROW = TypeAdapter(ContactIn)


@dataclass(frozen=True)
class RowError:
    row: int  # 1-based item number (JSON) or line number (CSV, header = line 1)
    field: str
    message: str


@dataclass(frozen=True)
class ValidRow:
    row: int
    contact: ContactIn


def validate_rows(rows: Iterable[tuple[int, Any]]) -> tuple[list[ValidRow], list[RowError]]:
    """Validate each row; a number or external id repeated within the input is an error
    on the later row."""
    valid: list[ValidRow] = []
    errors: list[RowError] = []
    phones: dict[str, int] = {}
    external: dict[str, int] = {}
    for row, data in rows:
        try:
            contact = _ROW.validate_python(data)
        except ValidationError as exc:
            for err in exc.errors(include_url=False, include_input=False):
                field = ".".join(str(p) for p in err["loc"]) or "row"
                errors.append(RowError(row, field, err["msg"].removeprefix("Value error, ")))
            continue
        if contact.phone in phones:
            errors.append(RowError(row, "phone", f"same number as row {phones[contact.phone]}"))
            continue
        if contact.external_id is not None and contact.external_id in external:
            errors.append(RowError(row, "external_id", f"same external_id as row {external[contact.external_id]}"))
            continue
        phones[contact.phone] = row
        if contact.external_id is not None:
            external[contact.external_id] = row
        valid.append(ValidRow(row, contact))
    return valid, errors


def parse_csv(text: str) -> tuple[list[tuple[int, dict[str, Any]]], list[RowError]]:
    """Rows of a CSV file keyed by column, with their line numbers, and the lines that
    could not be read. The header names the
    columns (case-insensitive): ``phone`` is required, the others of COLUMNS are optional
    and any further column goes into ``extra``. Empty cells are absent. Comma or
    semicolon separated."""
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise ValidationFailed("the CSV file is empty", details={"field": "csv"}) from None
    except csv.Error as exc:
        raise ValidationFailed(f"CSV header line: {exc}", details={"field": "csv"}) from None
    names = [h.strip().lower() for h in header]
    if "phone" not in names:
        raise ValidationFailed("the CSV header needs a 'phone' column", details={"field": "csv", "header": names})
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes or "" in names:
        raise ValidationFailed(
            f"CSV header columns must be named and unique: {dupes or ['(empty)']}", details={"field": "csv"}
        )
    out: list[tuple[int, dict[str, Any]]] = []
    errors: list[RowError] = []
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(RowError(reader.line_num, "row", f"unreadable CSV: {exc}"))
            break
        if not any(c.strip() for c in cells):
            continue
        if len(out) + len(errors) >= MAX_ROWS:
            raise ValidationFailed(f"at most {MAX_ROWS} rows per import", details={"field": "csv"})
        if len(cells) > len(names):
            errors.append(RowError(reader.line_num, "row", f"{len(cells)} columns, the header has {len(names)}"))
            continue
        row: dict[str, Any] = {}
        extra: dict[str, str] = {}
        for name, cell in zip(names, cells + [""] * (len(names) - len(cells)), strict=True):
            value = cell.strip()
            if value == "":
                continue
            if name in COLUMNS:
                row[name] = value
            else:
                extra[name] = value
        if extra:
            row["extra"] = extra
        out.append((reader.line_num, row))
    return out, errors
