"""A real browser for the HMI's tests: Debian's Chromium, driven by Playwright.

Playwright never downloads a browser here: it drives ``/usr/bin/chromium``, which
``.ci/run`` installs from Debian's ``chromium`` package. Every page is watched for
console errors and content-security-policy violations, which fail the test that
caused them. Screenshots are kept under ``var/hmi-screenshots`` as artifacts of
the run (the main ones are copied into ``docs/hmi/`` by hand).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from plantcore.operators import Credentials
from tests.support import free_port

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path("var/hmi-screenshots")
# How long the page may take to show what the test waits for: the stack's own pace
# (polls, projections) on a loaded machine, not a measure of speed.
WAIT_MS = 20_000
expect.set_options(timeout=WAIT_MS)


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield browser
        finally:
            await browser.close()


class WatchedPage:
    """A page with a viewport of a control-room screen, the errors it logged, what it fetched."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.requested: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("request", lambda request: self.requested.append(request.url))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    async def screenshot(self, name: str) -> Path:
        await asyncio.to_thread(SCREENSHOTS.mkdir, parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path

    async def log_in(self, url: str, person: Credentials, screen: str | None = None) -> Page:
        """The HMI at ``url`` with ``person`` logged in, on the screen of that title."""
        page = self.page
        await page.goto(url + "/")
        await page.get_by_label("User name").fill(person.username)
        await page.get_by_label("Password").fill(person.password)
        await page.get_by_role("button", name="Log in").click()
        await expect(page.locator("#who")).to_contain_text(person.username)
        if screen is not None:
            await self.open(screen)
        return page

    async def open(self, screen: str) -> None:
        await self.page.get_by_role("link", name=screen).click()
        await expect(self.page).to_have_title(f"{screen} · plantcore")

    def assert_clean(self, origin: str) -> None:
        """No error, and nothing fetched from anywhere but ``origin`` (the plant core)."""
        assert not self.errors, self.errors
        elsewhere = [url for url in self.requested if not url.startswith((origin + "/", "data:"))]
        assert not elsewhere, elsewhere


class Cable:
    """A TCP relay from a port of its own to the plant core's, which a test can unplug.

    What a page sees of a server restart: every connection closed, none accepted for a
    while, then accepted again, at the same address.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._relays: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def plug(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def unplug(self) -> None:
        assert self._server is not None
        self._server.close()
        for relay in list(self._relays):
            relay.cancel()
        await asyncio.gather(*self._relays, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        relay = asyncio.current_task()
        assert relay is not None
        self._relays.add(relay)
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port
        )
        try:
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        finally:
            self._relays.discard(relay)
            for end in (writer, upstream_writer):
                end.close()

    async def __aenter__(self) -> Cable:
        await self.plug()
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._server is not None:
            await self.unplug()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):  # either end gone: the relay ends
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()


@contextlib.asynccontextmanager
async def watched_page(browser: Browser) -> AsyncIterator[WatchedPage]:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = WatchedPage(await context.new_page())
        page.page.set_default_timeout(WAIT_MS)
        yield page
    finally:
        await context.close()
