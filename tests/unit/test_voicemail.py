from __future__ import annotations

from types import SimpleNamespace

import pytest

from hitcall_pbx.dialer.voicemail import SOUND_NAME, VOICEMAIL_MAX_S, message_left, voicemail_time


@pytest.mark.parametrize(
    ("results", "left"),
    [
        (["SILENCE", "SUCCESS"], True),
        (["SILENCE", "FAILED"], False),  # the sound is missing
        (["TIMEOUT", ""], False),  # the machine never went quiet: nothing played
        (["SILENCE"], False),
        ([], False),
    ],
)
def test_the_message_counts_as_left_only_after_silence_and_a_full_playback(results: list[str], left: bool) -> None:
    assert message_left(results) is left


@pytest.mark.parametrize("name", ["vm", "acme/vm-fi", "a_b/c-d/e/f", "x" * 64])
def test_sound_names(name: str) -> None:
    assert SOUND_NAME.fullmatch(name)


@pytest.mark.parametrize(
    "name", ["", "../etc/passwd", "acme/../x", "/abs", "a/b.wav", "a b", "a//b", "x" * 65, "a/b/c/d/e", "a\nb"]
)
def test_sound_names_refused(name: str) -> None:
    assert not SOUND_NAME.fullmatch(name)


def _call(amd: str | None, drop: bool) -> SimpleNamespace:
    return SimpleNamespace(fsm=SimpleNamespace(amd_status=amd), campaign=SimpleNamespace(voicemail_drop=drop))


def test_the_watchdog_gives_a_machine_leaving_a_message_its_time() -> None:
    assert voicemail_time(_call("MACHINE", True)) == VOICEMAIL_MAX_S >= 60
    assert voicemail_time(_call("MACHINE", False)) == 0
    assert voicemail_time(_call("HUMAN", True)) == 0
    assert voicemail_time(_call(None, True)) == 0
