"""Disposition codes and their rules: what the agent's verdict on a call does to the contact.

Each campaign has a list of disposition codes (code, Finnish and English label, the
agent phone key, the rule). The rule decides the contact's next step once the call has
ended:

* ``final``: the contact is done;
* ``retry``: dial again after the code's delay (``retry_delay_s``);
* ``callback``: a callback at a given time (the caller supplies it, see core.callbacks);
* ``do_not_call``: the number goes on the global do-not-call list (blocks every campaign);
* ``wrong_number``: the number does not reach the person: the contact fails;
* ``recycle``: the contact goes back into the list after ``recycle_days`` days with its
  attempts counted from zero again.

Pure: no I/O, `now` is passed in.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from hitcall_pbx.errors import ValidationFailed

__all__ = [
    "CODE_PATTERN",
    "DEFAULT_DISPOSITIONS",
    "PHONE_KEYS",
    "ContactEffect",
    "Disposition",
    "Rule",
    "by_key",
    "contact_effect",
    "disposition_from",
    "find",
    "validate_list",
    "wrap_up_may_end",
]

CODE_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Keys 0-2 are hang up / pause / ready, # and * decide preview offers.
PHONE_KEYS = frozenset("3456789")
MAX_CODES = 50
MAX_LABEL = 100
MAX_RETRY_DELAY_S = 30 * 86400
MAX_RECYCLE_DAYS = 365


class Rule(enum.StrEnum):
    FINAL = "final"
    RETRY = "retry"
    CALLBACK = "callback"
    DO_NOT_CALL = "do_not_call"
    WRONG_NUMBER = "wrong_number"
    RECYCLE = "recycle"


@dataclass(frozen=True, kw_only=True)
class Disposition:
    code: str
    label_fi: str
    label_en: str
    rule: Rule
    phone_key: str | None = None
    retry_delay_s: int | None = None  # rule retry
    recycle_days: int | None = None  # rule recycle

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "label_fi": self.label_fi,
            "label_en": self.label_en,
            "phone_key": self.phone_key,
            "rule": self.rule.value,
            "retry_delay_s": self.retry_delay_s,
            "recycle_days": self.recycle_days,
        }


# Today's phone keys, as every new campaign gets them.
DEFAULT_DISPOSITIONS: tuple[Disposition, ...] = (
    Disposition(code="sale", label_fi="Kauppa", label_en="Sale", phone_key="3", rule=Rule.FINAL),
    Disposition(code="callback", label_fi="Soitto takaisin", label_en="Callback", phone_key="4", rule=Rule.CALLBACK),
    Disposition(
        code="not_interested", label_fi="Ei kiinnostunut", label_en="Not interested", phone_key="5", rule=Rule.FINAL
    ),
    Disposition(
        code="wrong_number", label_fi="Väärä numero", label_en="Wrong number", phone_key="6", rule=Rule.WRONG_NUMBER
    ),
    Disposition(code="do_not_call", label_fi="Älä soita", label_en="Do not call", phone_key="7", rule=Rule.DO_NOT_CALL),
    Disposition(code="other", label_fi="Muu", label_en="Other", phone_key="8", rule=Rule.FINAL),
    Disposition(
        code="no_decision",
        label_fi="Ei päätöstä",
        label_en="No decision",
        phone_key="9",
        rule=Rule.RETRY,
        retry_delay_s=86400,
    ),
)


def _bad(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, details={"field": field})


def _label(value: object, field: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_LABEL:
        raise _bad(field, f"{field} must be 1-{MAX_LABEL} characters")
    return value.strip()


def _int(value: object, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(field, f"{field} must be an integer {low}..{high}")
    return value


def disposition_from(item: Mapping[str, Any], field: str = "dispositions[0]") -> Disposition:
    """One disposition from plain data, checked; ValidationFailed names the field."""
    code = item.get("code")
    if not isinstance(code, str) or not CODE_PATTERN.fullmatch(code):
        raise _bad(f"{field}.code", "code must be 1-64 of A-Z a-z 0-9 _ . -")
    try:
        rule = Rule(str(item.get("rule")))
    except ValueError:
        raise _bad(f"{field}.rule", f"rule must be one of {', '.join(r.value for r in Rule)}") from None
    key = item.get("phone_key")
    if key is not None and (not isinstance(key, str) or key not in PHONE_KEYS):
        raise _bad(f"{field}.phone_key", "phone_key must be one of 3-9 (or null)")
    delay = item.get("retry_delay_s")
    days = item.get("recycle_days")
    if rule is Rule.RETRY:
        delay = _int(delay, f"{field}.retry_delay_s", 60, MAX_RETRY_DELAY_S)
    elif delay is not None:
        raise _bad(f"{field}.retry_delay_s", "retry_delay_s is for rule retry only")
    if rule is Rule.RECYCLE:
        days = _int(days, f"{field}.recycle_days", 1, MAX_RECYCLE_DAYS)
    elif days is not None:
        raise _bad(f"{field}.recycle_days", "recycle_days is for rule recycle only")
    return Disposition(
        code=code,
        label_fi=_label(item.get("label_fi"), f"{field}.label_fi"),
        label_en=_label(item.get("label_en"), f"{field}.label_en"),
        phone_key=key,
        rule=rule,
        retry_delay_s=delay,
        recycle_days=days,
    )


def validate_list(items: Sequence[Mapping[str, Any]]) -> tuple[Disposition, ...]:
    """A campaign's whole list: each item valid, codes and phone keys unique."""
    if len(items) > MAX_CODES:
        raise _bad("dispositions", f"at most {MAX_CODES} disposition codes")
    out = tuple(disposition_from(item, f"dispositions[{i}]") for i, item in enumerate(items))
    seen_codes: set[str] = set()
    seen_keys: set[str] = set()
    for i, d in enumerate(out):
        if d.code in seen_codes:
            raise _bad(f"dispositions[{i}].code", f"code {d.code} appears twice")
        seen_codes.add(d.code)
        if d.phone_key is not None:
            if d.phone_key in seen_keys:
                raise _bad(f"dispositions[{i}].phone_key", f"phone key {d.phone_key} appears twice")
            seen_keys.add(d.phone_key)
    return out


def find(dispositions: Iterable[Disposition], code: str) -> Disposition:
    """The campaign's disposition `code`; ValidationFailed (field "disposition") when it has none."""
    for d in dispositions:
        if d.code == code:
            return d
    raise _bad("disposition", f"the campaign has no disposition code {code!r}")


def by_key(dispositions: Iterable[Disposition], key: str) -> Disposition | None:
    for d in dispositions:
        if d.phone_key == key:
            return d
    return None


@dataclass(frozen=True)
class ContactEffect:
    """What a disposition does to its contact once the call has ended.

    `status` / `retry_at`: the contact's new status and next attempt (None: the
    status is left as the call's end set it, e.g. a callback already scheduled);
    `reset_attempts`: recycle, the attempts count from zero again; `dnc`: the number
    goes on the global do-not-call list; `needs_callback`: the rule needs a callback time."""

    status: str | None
    retry_at: datetime | None = None
    reset_attempts: bool = False
    dnc: bool = False
    needs_callback: bool = False


def contact_effect(d: Disposition, now: datetime) -> ContactEffect:
    if now.tzinfo is None or now.utcoffset() is None:
        raise _bad("now", "now must be timezone-aware")
    match d.rule:
        case Rule.FINAL:
            return ContactEffect("done")
        case Rule.RETRY:
            assert d.retry_delay_s is not None  # checked by disposition_from
            return ContactEffect("retry", now + timedelta(seconds=d.retry_delay_s))
        case Rule.CALLBACK:
            return ContactEffect(None, needs_callback=True)
        case Rule.DO_NOT_CALL:
            return ContactEffect("dnc", dnc=True)
        case Rule.WRONG_NUMBER:
            return ContactEffect("failed")
        case Rule.RECYCLE:
            assert d.recycle_days is not None  # checked by disposition_from
            return ContactEffect("retry", now + timedelta(days=d.recycle_days), reset_attempts=True)


def wrap_up_may_end(*, required: bool, talked: bool, disposition: str | None) -> bool:
    """Whether an agent's wrap-up may end: a campaign that requires a disposition keeps the
    agent in wrap-up until the call they talked on has one."""
    return not (required and talked and disposition is None)
