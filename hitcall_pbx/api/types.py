"""Field types shared by the API's models (validation mirrors the schema's CHECKs)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ..core.phone import normalize_e164, validate_timezone
from ..errors import ValidationFailed

BIGINT_MAX = 2**63 - 1

Id = Annotated[int, Field(ge=1, le=BIGINT_MAX)]


def _e164(value: str) -> str:
    try:
        return normalize_e164(value)
    except ValidationFailed as exc:
        raise ValueError(exc.message) from None


def _tz(value: str) -> str:
    try:
        return validate_timezone(value)
    except ValidationFailed as exc:
        raise ValueError(exc.message) from None


Phone = Annotated[
    str,
    Field(min_length=1, max_length=64, description="phone number in any form; stored as E.164 (national = Finland)"),
    AfterValidator(_e164),
]
TimeZone = Annotated[str, Field(min_length=1, max_length=64, examples=["Europe/Helsinki"]), AfterValidator(_tz)]
Email = Annotated[str, Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Text = Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S")]
MediaUri = Annotated[str, Field(max_length=200, pattern=r"^(sound|recording):\S+$", examples=["sound:hitcall-info"])]
Code = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]


def _drop_null_defaults(schema: dict[str, Any]) -> None:
    for prop in schema.get("properties", {}).values():
        if prop.get("default", 0) is None and "anyOf" not in prop:
            del prop["default"]


class In(BaseModel):
    """A request body: unknown fields are refused (422 naming them)."""

    model_config = ConfigDict(extra="forbid")


# The default of a Patch field typed without None (`name: Text = UNSET`): the field may be left
# out but not sent as null. Typed Any so that a non-optional annotation takes it: pydantic does
# not validate defaults, and `Patch.changes()` holds only the fields that were sent.
UNSET: Any = None


class Patch(In):
    """A partial update: only the fields sent change. A field typed without None may be
    left out (its default is `UNSET`) but not sent as null."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_drop_null_defaults)

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Query(BaseModel):
    """Query-string parameters; unknown ones are ignored."""

    model_config = ConfigDict(extra="ignore")


class Page(Query):
    limit: int = Field(default=100, ge=1, le=1000)
    after_id: int | None = Field(default=None, ge=0, le=BIGINT_MAX, description="return items with id > after_id")
