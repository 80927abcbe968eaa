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
    """A page with a viewport of a control-room screen, and the errors it logged."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    async def screenshot(self, name: str) -> Path:
        await asyncio.to_thread(SCREENSHOTS.mkdir, parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path

    async def log_in(self, url: str, person: Credentials) -> None:
        page = self.page
        await page.goto(url + "/")
        await page.get_by_label("User name").fill(person.username)
        await page.get_by_label("Password").fill(person.password)
        await page.get_by_role("button", name="Log in").click()
        await expect(page.locator("#who")).to_contain_text(person.username, timeout=WAIT_MS)

    def assert_clean(self) -> None:
        assert not self.errors, self.errors


@contextlib.asynccontextmanager
async def watched_page(browser: Browser) -> AsyncIterator[WatchedPage]:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = WatchedPage(await context.new_page())
        page.page.set_default_timeout(WAIT_MS)
        yield page
    finally:
        await context.close()
