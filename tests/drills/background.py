"""A drill run to its end on a thread of its own, beside the tests of the session."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from typing import Any

# The drill's own bounds are shorter: this only keeps a stuck one from holding the run.
BACKGROUND_TIMEOUT_SECONDS = 300.0


class BackgroundDrill:
    """A drill coroutine run to its end on a thread of its own; :meth:`outcome` waits for it.

    Its event loop's blocking calls (name lookups, say) run on one thread made
    here, before any test starts: no test sees a thread appear while it runs,
    which the suite counts as a leak.
    """

    def __init__(self, name: str, drill: Callable[[], Awaitable[Any]]) -> None:
        self._drill = drill
        self._outcome: concurrent.futures.Future[Any] = concurrent.futures.Future()
        # Its services are tied to this thread: the kernel stops them should it end first.
        self._thread = threading.Thread(target=self._run, name=f"{name} drill", daemon=True)
        self._blocking = concurrent.futures.ThreadPoolExecutor(1, f"{name} drill blocking")
        self._blocking.submit(lambda: None).result()  # its one thread, made now
        self._thread.start()

    def outcome(self) -> Any:
        return self._outcome.result(BACKGROUND_TIMEOUT_SECONDS)

    def join(self) -> None:
        self._thread.join(BACKGROUND_TIMEOUT_SECONDS)
        self._blocking.shutdown()

    def _run(self) -> None:
        async def main() -> Any:
            asyncio.get_running_loop().set_default_executor(self._blocking)
            return await self._drill()

        try:
            self._outcome.set_result(asyncio.run(main()))
        except BaseException as exc:
            self._outcome.set_exception(exc)
