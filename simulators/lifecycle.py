"""What every simulator is: a server that starts, stops, and starts again.

Stopping keeps the press model's state, so a test (or an operator in
training) cuts a device's connection and restores it on the same port.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

from simulators.model import PressModel, tick_forever


class Simulator(ABC):
    """``async with XxxSimulator(...) as sim``: started on entry, stopped on exit."""

    _ticker: asyncio.Task[None] | None = None

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def _start_ticking(
        self,
        model: PressModel,
        tick_seconds: float,
        publish: Callable[[], Awaitable[None] | None],
        name: str,
    ) -> None:
        """Step the model in real time, and ``publish`` its outputs after each step."""
        self._ticker = asyncio.create_task(tick_forever(model, tick_seconds, publish), name=name)

    async def _stop_ticking(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.wait({self._ticker})
            self._ticker = None
