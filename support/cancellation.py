"""Cancellation that a library swallowed, raised again (for every loop that awaits one).

On Python 3.11, ``asyncio.wait_for`` (which pymodbus, aiomqtt and nats-py use to time
their requests) can lose a cancel that arrives just as the awaited answer does:
the call returns normally, yet the task is still marked as being cancelled. A
loop that goes on from there would never stop; loops that await such libraries
call :func:`raise_if_cancelling` once per turn.
"""

from __future__ import annotations

import asyncio


def raise_if_cancelling() -> None:
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
