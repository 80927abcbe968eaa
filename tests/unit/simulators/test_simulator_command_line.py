"""``python -m simulators``: the drill options of the Modbus press, and their bad values."""

from __future__ import annotations

import pytest

from simulators.__main__ import main
from simulators.model import COUNTER_WRAP, ReadCounter


@pytest.mark.parametrize("delay", ["-1", "60001", "soon"])
def test_a_reply_delay_outside_a_minute_is_refused_before_anything_serves(
    delay: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["modbus", "--port", "1", "--write-reply-delay-ms", delay])
    assert stopped.value.code == 2
    assert "--write-reply-delay-ms" in capsys.readouterr().err


def test_the_write_options_belong_to_the_modbus_press_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["s7", "--write-log", "writes.jsonl"])
    assert "unrecognized arguments: --write-log" in capsys.readouterr().err


def test_the_read_counter_counts_from_one_and_wraps_like_an_int32() -> None:
    counter = ReadCounter()
    assert [counter.read() for _ in range(3)] == [1, 2, 3]
    counter.count = COUNTER_WRAP - 1
    assert counter.read() == 0
