"""Disposition codes and their rules (core.dispositions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hitcall_pbx.agents.sessions import DISPOSITION_KEYS
from hitcall_pbx.core.dispositions import (
    DEFAULT_DISPOSITIONS,
    ContactEffect,
    Rule,
    by_key,
    contact_effect,
    disposition_from,
    find,
    validate_list,
    wrap_up_may_end,
)
from hitcall_pbx.errors import ValidationFailed

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def test_defaults_reproduce_the_phone_keys():
    assert {d.phone_key: d.code for d in DEFAULT_DISPOSITIONS} == {
        "3": "sale",
        "4": "callback",
        "5": "not_interested",
        "6": "wrong_number",
        "7": "do_not_call",
        "8": "other",
        "9": "no_decision",
    }
    assert {d.phone_key: d.code for d in DEFAULT_DISPOSITIONS} == DISPOSITION_KEYS
    rules = {d.code: d.rule for d in DEFAULT_DISPOSITIONS}
    assert rules["do_not_call"] is Rule.DO_NOT_CALL and rules["callback"] is Rule.CALLBACK
    assert rules["wrong_number"] is Rule.WRONG_NUMBER and rules["sale"] is Rule.FINAL
    # the defaults are a valid list in their own right
    assert validate_list([d.as_dict() for d in DEFAULT_DISPOSITIONS]) == DEFAULT_DISPOSITIONS
    assert all(d.label_fi and d.label_en and d.label_fi != d.label_en for d in DEFAULT_DISPOSITIONS)


def test_each_rule_and_its_effect_on_the_contact():
    def make(rule: str, **kw: object):
        return disposition_from({"code": "x", "label_fi": "X", "label_en": "X", "rule": rule, **kw})

    assert contact_effect(make("final"), NOW) == ContactEffect("done")
    assert contact_effect(make("retry", retry_delay_s=3600), NOW) == ContactEffect("retry", NOW + timedelta(hours=1))
    assert contact_effect(make("callback"), NOW) == ContactEffect(None, needs_callback=True)
    assert contact_effect(make("do_not_call"), NOW) == ContactEffect("dnc", dnc=True)
    assert contact_effect(make("wrong_number"), NOW) == ContactEffect("failed")
    assert contact_effect(make("recycle", recycle_days=30), NOW) == ContactEffect(
        "retry", NOW + timedelta(days=30), reset_attempts=True
    )
    with pytest.raises(ValidationFailed) as err:
        contact_effect(make("final"), NOW.replace(tzinfo=None))
    assert err.value.details["field"] == "now"


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"code": "bad code", "rule": "final"}, "dispositions[0].code"),
        ({"code": "a", "rule": "maybe"}, "dispositions[0].rule"),
        ({"code": "a", "rule": "final", "phone_key": "2"}, "dispositions[0].phone_key"),
        ({"code": "a", "rule": "retry"}, "dispositions[0].retry_delay_s"),
        ({"code": "a", "rule": "retry", "retry_delay_s": 10}, "dispositions[0].retry_delay_s"),
        ({"code": "a", "rule": "final", "retry_delay_s": 600}, "dispositions[0].retry_delay_s"),
        ({"code": "a", "rule": "recycle"}, "dispositions[0].recycle_days"),
        ({"code": "a", "rule": "final", "recycle_days": 3}, "dispositions[0].recycle_days"),
        ({"code": "a", "rule": "final", "label_fi": " "}, "dispositions[0].label_fi"),
    ],
)
def test_a_bad_code_names_its_field(item, field):
    with pytest.raises(ValidationFailed) as err:
        validate_list([{"label_fi": "L", "label_en": "L", **item}])
    assert err.value.details["field"] == field


def test_codes_and_keys_are_unique_in_a_list():
    base = {"label_fi": "L", "label_en": "L", "rule": "final"}
    with pytest.raises(ValidationFailed) as err:
        validate_list([{**base, "code": "a"}, {**base, "code": "a"}])
    assert err.value.details["field"] == "dispositions[1].code"
    with pytest.raises(ValidationFailed) as err:
        validate_list([{**base, "code": "a", "phone_key": "3"}, {**base, "code": "b", "phone_key": "3"}])
    assert err.value.details["field"] == "dispositions[1].phone_key"


def test_find_and_key_lookup():
    assert find(DEFAULT_DISPOSITIONS, "sale").phone_key == "3"
    assert by_key(DEFAULT_DISPOSITIONS, "7").code == "do_not_call"
    assert by_key(DEFAULT_DISPOSITIONS, "2") is None
    with pytest.raises(ValidationFailed) as err:
        find(DEFAULT_DISPOSITIONS, "lottery_win")
    assert err.value.details == {"field": "disposition"}


def test_a_required_disposition_keeps_wrap_up_open_only_after_a_talk_without_one():
    assert not wrap_up_may_end(required=True, talked=True, disposition=None)
    assert wrap_up_may_end(required=True, talked=True, disposition="sale")
    assert wrap_up_may_end(required=True, talked=False, disposition=None)
    assert wrap_up_may_end(required=False, talked=True, disposition=None)


_rules = st.sampled_from(list(Rule))


@given(rule=_rules, delay=st.integers(60, 30 * 86400), days=st.integers(1, 365), minutes=st.integers(0, 10**6))
def test_every_rule_gives_a_consistent_effect(rule, delay, days, minutes):
    now = NOW + timedelta(minutes=minutes)
    extra = {"retry_delay_s": delay} if rule is Rule.RETRY else {"recycle_days": days} if rule is Rule.RECYCLE else {}
    d = disposition_from({"code": "c", "label_fi": "F", "label_en": "E", "rule": rule.value, **extra})
    effect = contact_effect(d, now)
    # a next attempt exactly when the contact is dialled again, always later than now
    assert (effect.retry_at is not None) == (effect.status == "retry")
    if effect.retry_at is not None:
        assert effect.retry_at > now
    assert effect.dnc == (rule is Rule.DO_NOT_CALL) and effect.needs_callback == (rule is Rule.CALLBACK)
    assert (effect.status is None) == (rule is Rule.CALLBACK)
    assert effect.reset_attempts == (rule is Rule.RECYCLE)


@given(
    keys=st.lists(st.sampled_from("3456789"), max_size=7),
    codes=st.lists(st.from_regex(r"[a-z]{1,5}", fullmatch=True), min_size=1, max_size=7),
)
def test_a_list_is_accepted_exactly_when_codes_and_keys_are_unique(keys, codes):
    items = [
        {"code": c, "label_fi": "F", "label_en": "E", "rule": "final", "phone_key": keys[i] if i < len(keys) else None}
        for i, c in enumerate(codes)
    ]
    used_keys = [i["phone_key"] for i in items if i["phone_key"] is not None]
    unique = len(set(codes)) == len(codes) and len(set(used_keys)) == len(used_keys)
    try:
        out = validate_list(items)
    except ValidationFailed:
        assert not unique
    else:
        assert unique and [d.code for d in out] == codes
