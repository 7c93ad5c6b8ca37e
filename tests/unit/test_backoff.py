import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hitcall_pbx.core.backoff import Backoff


@given(st.integers(min_value=0, max_value=10_000), st.integers())
def test_delay_within_half_ceiling_and_cap(attempt, seed):
    b = Backoff(base=0.1, cap=2.0)
    d = b.delay(attempt, random.Random(seed))
    assert b.ceiling(attempt) / 2 <= d <= b.ceiling(attempt) <= 2.0


def test_ceiling_grows_then_caps():
    b = Backoff(base=0.1, cap=1.0)
    assert [b.ceiling(i) for i in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_negative_attempt_rejected():
    with pytest.raises(ValueError):
        Backoff().ceiling(-1)
