"""The operator's HMI in a real browser, against the whole stack and a simulated press.

One plant core (:mod:`tests.e2e.stack`) with Modbus simulators (a press, and a tank
whose level raises a flood of alarms in its area) and one Chromium serve every test
of the module; each test opens a fresh browser context, logs in as the person the
scenario is about and does what they would do, with the keyboard where the flow is
an operator's (item 10 of the HMI's issue). Each main screen is saved under
``var/hmi-screenshots``; every console error or blocked resource (the content
security policy) fails the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pyotp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, expect

from audit.checkpoints import generate_signing_key
from domain.alarm import CHATTER_ACTIVATIONS
from plantfile.alarm_conditions import AlarmCondition
from plantfile.plant import PlantConfig
from simulators.modbus_server import PRESS_REGISTERS, READ_SEQUENCE, ModbusSimulator
from tests.e2e.browser import WAIT_MS, Cable, WatchedPage, chromium, watched_page
from tests.e2e.stack import Account, RunningPlant, area_of, press_plant, running_plant
from tests.support import eventually, free_port, unique

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.asyncio(loop_scope="module"),
    # The first test starts the stack and the last stops it: a minute more when the cores
    # are shared with the rest of the suite.
    pytest.mark.timeout(300),
]

ACCOUNTS = {
    "operator": Account(["operator"], full_name="Ana Operator"),
    # A TOTP code is taken once per person: each test that types one has a person of its own.
    "requester": Account(["operator"], full_name="Rui Requester"),
    "supervisor": Account(["supervisor"], full_name="Sam Supervisor"),
    "viewer": Account(["viewer"], full_name="Vic Viewer"),
    "auditor": Account(["auditor"], full_name="Aud Auditor"),
    "admin": Account(["admin"], full_name="Adi Admin"),
}
# WCAG 2.1 AA: the least contrast of normal text with its background.
AA_CONTRAST = 4.5


# The overview's load (item 10 of the HMI's issue): 5 devices of 10 tags, each polled
# 10 times a second; the update-to-paint lag in the browser, p99, must stay below this.
LOAD_DEVICES = 5
LOAD_POLL_SECONDS = 0.1
LAG_P99_MS = 250.0
# The press's registers and its read counter, and four of them read again under another
# name: 10 tags, every one sent at every poll; read-only, the load line is only watched.
LOAD_TAGS = tuple(
    register.tag.model_copy(update={"name": register.tag.name + suffix, "writable": False})
    for registers, suffix in (((*PRESS_REGISTERS, READ_SEQUENCE), ""), (PRESS_REGISTERS[1:], "_2"))
    for register in registers
)
assert len(LOAD_TAGS) == 10


# A tank in an area of its own, whose level raises this many alarms at once: an area's
# flood starts above 10 new alarms within ten minutes (domain.alarm_flood), so one rise of
# its level floods the area, and three within a minute make its alarms chatter.
TANK_ALARMS = 11
TANK_LEVEL_HIGH = 1500


def tank_conditions() -> tuple[AlarmCondition, ...]:
    """``level_01`` to ``level_11``: names that are no part of one another."""
    return tuple(
        AlarmCondition(
            name=f"level_{number:02d}", kind="hi", limit=TANK_LEVEL_HIGH, priority="medium"
        )
        for number in range(1, TANK_ALARMS + 1)
    )


def hmi_plant(device: str, port: int, tank_port: int, load_ports: Sequence[int]) -> PlantConfig:
    """The demo's press, with its setpoint also under the two-person rule as ``line_setpoint``;
    a tank (:func:`tank_conditions`) read from a press simulator of its own at ``tank_port``:
    its ``level`` is that press's setpoint, and its agitator's ``running`` stops in an
    emergency; and the load line: a device of :data:`LOAD_TAGS` at each of ``load_ports``,
    polled at :data:`LOAD_POLL_SECONDS`, whose simulators run only while the load test
    measures.
    """
    plant = press_plant(device, port)
    press = plant.devices[0]
    running = next(tag for tag in press.tags if tag.name == "running")
    setpoint = next(tag for tag in press.tags if tag.name == "speed_setpoint")
    critical = setpoint.model_copy(update={"name": "line_setpoint", "critical": True})
    load_line = [
        press.model_copy(
            update={
                "id": f"{device}-load-{index}",
                "area": "load-line",
                "modbus": press.modbus.model_copy(update={"port": load_port}),
                "poll_seconds": LOAD_POLL_SECONDS,
                "comm_loss_alarm": None,
                "tags": list(LOAD_TAGS),
            }
        )
        for index, load_port in enumerate(load_ports)
    ]
    level = setpoint.model_copy(
        update={"name": "level", "writable": False, "alarms": tank_conditions()}
    )
    tank = press.model_copy(
        update={
            "id": tank_of(device),
            "area": area_of(tank_of(device)),
            "modbus": press.modbus.model_copy(update={"port": tank_port}),
            "comm_loss_alarm": None,
            "tags": [running, level],
        }
    )
    press = press.model_copy(update={"tags": [*press.tags, critical]})
    # A load device is reached within a second of its simulator's start.
    return plant.model_copy(
        update={"devices": [press, tank, *load_line], "reconnect_delay_seconds": 1.0}
    )


def tank_of(device: str) -> str:
    return f"{device}-tank"


@dataclass
class Hmi:
    plant: RunningPlant
    simulator: ModbusSimulator
    # The tank's: its model's speed setpoint is the tank's level.
    tank_simulator: ModbusSimulator
    browser: Browser
    device: str
    load_ports: dict[str, int]

    @property
    def tank(self) -> str:
        return tank_of(self.device)

    async def gql(self, query: str, token: str | None = None, **variables: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(base_url=self.plant.url) as http:
            response = await http.post(
                "/graphql", json={"query": query, "variables": variables}, headers=headers
            )
        return response.json()

    async def token(self, person: str) -> str:
        who = self.plant.people[person]
        body = await self.gql(LOGIN, u=who.username, p=who.password)
        return str(body["data"]["login"]["accessToken"])


LOGIN = "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { accessToken } }"


@pytest.fixture(autouse=True)
def no_leaked_threads() -> None:
    """The plant core runs across the module: its executors' threads are checked once, below."""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hmi(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Hmi]:
    before = set(threading.enumerate())
    checkpoints = tmp_path_factory.mktemp("audit")
    device = unique("press")
    load_ports = [free_port() for _ in range(LOAD_DEVICES)]
    async with (
        ModbusSimulator(port=free_port(), tick_seconds=0.05) as simulator,
        ModbusSimulator(port=free_port(), tick_seconds=0.05) as tank_simulator,
        # As the demo serves it: with the GraphQL explorer and introspection.
        running_plant(
            hmi_plant(device, simulator.port, tank_simulator.port, load_ports),
            ACCOUNTS,
            graphiql=True,
            introspection=True,
            # It signs its own checkpoints, which the auditor's screen shows.
            audit_signing_key=generate_signing_key(),
            audit_checkpoint_file=checkpoints / "checkpoints.jsonl",
            audit_checkpoint_seconds=1.0,
        ) as plant,
        chromium() as browser,
    ):
        ports = {f"{device}-load-{index}": port for index, port in enumerate(load_ports)}
        yield Hmi(plant, simulator, tank_simulator, browser, device, ports)
    # The module's event loop keeps its default executor (asyncio_N) until the loop closes.
    leaked = [
        t for t in threading.enumerate() if t not in before and not t.name.startswith("asyncio_")
    ]
    for thread in leaked:
        thread.join(timeout=5)
    assert not [t.name for t in leaked if t.is_alive()]


@pytest_asyncio.fixture(loop_scope="module")
async def page(hmi: Hmi) -> AsyncIterator[WatchedPage]:
    async with watched_page(hmi.browser) as watched:
        yield watched
        watched.assert_clean(hmi.plant.url)


def tag_row(page: Page, device: str, tag: str) -> Any:
    return page.locator(f'[data-device="{device}"] tr[data-tag="{tag}"]')


async def focus_and_press(page: Page, locator: Any, key: str = "Enter") -> None:
    """Keyboard only: focus the control (as Tab would) and press a key on it."""
    await locator.focus()
    await expect(locator).to_be_focused()
    await page.keyboard.press(key)


async def assert_focus_visible(page: Page) -> None:
    """The focused element draws a focus outline (not the browser's hidden default)."""
    outline = await page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, parseFloat(s.outlineWidth)]; }"
    )
    style, width = outline
    assert style != "none", outline
    assert width >= 2, outline


async def least_contrast(page: Page) -> list[Any]:
    """Each visible text's contrast with the background it is drawn on, the worst first."""
    return list(await page.evaluate(CONTRAST_SCRIPT))


CONTRAST_SCRIPT = """() => {
  const rgb = (text) => (text.match(/[\\d.]+/g) || []).map(Number);
  const luminance = ([r, g, b]) => [r, g, b]
    .map((c) => c / 255).map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4))
    .reduce((sum, c, i) => sum + c * [0.2126, 0.7152, 0.0722][i], 0);
  const background = (element) => {
    for (let e = element; e; e = e.parentElement) {
      const colour = rgb(getComputedStyle(e).backgroundColor);
      if (colour.length === 3 || colour[3] > 0) return colour.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const results = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const element = node.parentElement;
    if (!node.textContent.trim() || !element.checkVisibility()) continue;
    const fg = luminance(rgb(getComputedStyle(element).color));
    const bg = luminance(background(element));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    results.push([Math.round(ratio * 100) / 100, node.textContent.trim().slice(0, 40)]);
  }
  return results.sort((a, b) => a[0] - b[0]);
}"""


async def assert_contrast_aa(page: Page) -> None:
    worst = await least_contrast(page)
    assert worst, "no text on the page"
    assert worst[0][0] >= AA_CONTRAST, worst[:5]


# -- the operator --------------------------------------------------------------------------


async def test_an_operator_sees_the_speed_and_writes_a_setpoint_by_keyboard(
    hmi: Hmi, page: WatchedPage
) -> None:
    operator = hmi.plant.people["operator"]
    screen = await page.log_in(hmi.plant.url, operator)

    # The simulator's speed reaches the screen, live, and follows a change of it.
    speed = tag_row(screen, hmi.device, "speed").locator(".value")
    await expect(speed).to_have_text("1200")
    await expect(screen.locator(f'[data-device="{hmi.device}"] .state')).to_have_text("connected")
    await expect(screen.locator("#link")).to_have_text("● live")
    await assert_contrast_aa(screen)
    await page.screenshot("overview-before-the-load")

    # Keyboard only: the write dialog, a value out of limits refused before it is sent.
    await focus_and_press(
        screen, screen.get_by_role("button", name="Write speed_setpoint", exact=True)
    )
    await assert_focus_visible(screen)
    value = screen.get_by_label("New value of speed_setpoint")
    await expect(value).to_be_focused()
    await screen.keyboard.type("9999")
    await screen.keyboard.press("Enter")
    await expect(screen.get_by_role("alert").filter(has_text="At most 3000.")).to_be_visible()
    await value.fill("")
    await screen.keyboard.type("1500")
    await screen.keyboard.press("Enter")

    # The TOTP step, then every step of the command live, to the PLC's read-back.
    code = screen.get_by_label("TOTP code")
    await expect(code).to_be_focused()
    await screen.keyboard.type(pyotp.TOTP(operator.totp_secret).now())
    await screen.keyboard.press("Enter")
    steps = screen.get_by_role("list", name="Command steps")
    await expect(steps.locator("li strong")).to_have_text(
        ["Requested", "ChallengeIssued", "Confirmed", "WriteDispatched", "WriteSucceeded"]
    )
    await expect(steps).to_contain_text("read back 1500")
    await page.screenshot("write-dialog")
    await screen.keyboard.press("Escape")
    await expect(screen.get_by_role("dialog")).to_have_count(0)

    # The simulator took it, and the new setpoint and the rising speed are on screen.
    assert hmi.simulator.model.speed_setpoint == 1500
    await expect(tag_row(screen, hmi.device, "speed_setpoint").locator(".value")).to_have_text(
        "1500"
    )
    await expect(speed).to_have_text("1500", timeout=3 * WAIT_MS)

    # The commands screen shows the timeline with the operator's signature.
    await page.open("Commands")
    row = screen.locator("tr", has_text="speed_setpoint").first
    await focus_and_press(screen, row.get_by_role("button", name="Timeline"))
    timeline = screen.get_by_role("list", name="Command timeline")
    await expect(timeline).to_contain_text(f"signed by Ana Operator ({operator.username})")
    await page.screenshot("commands")


async def test_an_alarm_raised_by_the_simulator_is_acknowledged_by_keyboard(
    hmi: Hmi, page: WatchedPage
) -> None:
    screen = await page.log_in(hmi.plant.url, hmi.plant.people["operator"], "Alarms")

    # The winding overheats past its Hi limit: the alarm arrives, with its priority's shape.
    hmi.simulator.model.motor_temperature = 65.0
    # This press's row: the machine's NATS may carry other plants' alarms of the same name.
    alarm = (
        screen.get_by_role("table", name="Active alarms")
        .locator("tr", has_text="motor_temperature_hi")
        .filter(has_text=hmi.device)
    )
    await expect(alarm.locator(".state")).to_have_text("unack_active")
    await expect(alarm.locator(".priority")).to_have_text("▲ high")
    await assert_contrast_aa(screen)

    await focus_and_press(screen, alarm.get_by_role("button", name="Acknowledge"))
    comment = screen.get_by_label("Comment")
    await expect(comment).to_be_focused()
    await screen.keyboard.type("fan checked")
    await screen.keyboard.press("Enter")
    await expect(alarm.locator(".state")).to_have_text("ack_active")
    # The journal, read again when the screen is opened again, holds the acknowledgement.
    await page.open("Overview")
    await page.open("Alarms")
    await expect(screen.get_by_role("table", name="Alarm journal")).to_contain_text("Acknowledged")
    await page.screenshot("alarms")

    # Cooled down, the alarm leaves the list.
    hmi.simulator.model.motor_temperature = 30.0
    await expect(alarm).to_have_count(0, timeout=3 * WAIT_MS)


async def test_an_emergency_stop_needs_no_code_and_shows_its_steps(
    hmi: Hmi, page: WatchedPage
) -> None:
    hmi.tank_simulator.model.running = True
    screen = await page.log_in(hmi.plant.url, hmi.plant.people["operator"])
    running = tag_row(screen, hmi.tank, "running").locator(".value")
    await expect(running).to_have_text("on")

    stop = f"Emergency stop {hmi.tank}"
    await focus_and_press(screen, screen.get_by_role("button", name=stop, exact=True))
    dialog = screen.get_by_role("dialog", name=stop)
    await expect(dialog).to_contain_text("running = off: no code needed.")
    # Sent at once, confirmed with no challenge issued, every step to the read-back.
    steps = dialog.get_by_role("list", name="Command steps")
    await expect(steps.locator("li strong")).to_have_text(
        ["Requested", "Confirmed", "WriteDispatched", "WriteSucceeded"]
    )
    await expect(steps).to_contain_text("emergency action: no second factor")
    await expect(steps).to_contain_text("read back False")
    await expect(dialog.get_by_label("TOTP code")).to_have_count(0)
    await page.screenshot("emergency-stop")
    assert hmi.tank_simulator.model.running is False
    await screen.keyboard.press("Escape")
    await expect(running).to_have_text("off")


# The alarm journal's page in the HMI (hmi/static/js/alarms.js).
ALARM_JOURNAL_PAGE = 25
# The tank's alarms and journal, as the server records them.
TANK_ALARM_STATES = """query($d: String!) {
  alarms(active: false, device: $d) { condition state active chattering shelvedUntil } }"""
JOURNAL = """query($s: DateTime!, $u: DateTime!, $d: String, $e: String, $n: Int!) {
  alarmJournal(since: $s, until: $u, device: $d, event: $e, first: $n) {
    events { device condition area event actor detail } } }"""
REMOVE_FROM_SERVICE = """mutation($id: ID!, $r: String!) {
  removeAlarmFromService(alarmId: $id, reason: $r) { state } }"""


async def tank_alarms(hmi: Hmi, token: str) -> dict[str, Any]:
    body = await hmi.gql(TANK_ALARM_STATES, token, d=hmi.tank)
    return {alarm["condition"]: alarm for alarm in body["data"]["alarms"]}


async def set_tank_level(hmi: Hmi, token: str, level: int) -> None:
    """The tank's level, once the server has every alarm on it raised (or cleared) by it."""
    hmi.tank_simulator.model.speed_setpoint = level
    raised = level >= TANK_LEVEL_HIGH

    async def recorded() -> None:
        alarms = await tank_alarms(hmi, token)
        assert len(alarms) == TANK_ALARMS, alarms
        assert all(alarm["active"] is raised for alarm in alarms.values()), alarms

    await eventually(recorded, timeout=WAIT_MS / 1000)


async def journal(hmi: Hmi, token: str, count: int, **where: str) -> list[dict[str, Any]]:
    """The first ``count`` entries of the last day, over the window the HMI's journal asks."""
    now = datetime.now(UTC)
    since, until = (now - timedelta(days=1)).isoformat(), (now + timedelta(minutes=1)).isoformat()
    body = await hmi.gql(JOURNAL, token, s=since, u=until, n=count, **where)
    return list(body["data"]["alarmJournal"]["events"])


async def last_recorded(hmi: Hmi, token: str, event: str, condition: str) -> dict[str, Any]:
    entries = await journal(hmi, token, 500, d=hmi.tank, e=event)
    return [entry for entry in entries if entry["condition"] == condition][-1]


def alarm_row(page: Page, device: str, condition: str) -> Any:
    rows = page.get_by_role("table", name="Active alarms").locator("tr[data-alarm]")
    return rows.filter(has_text=device).filter(has_text=condition)


async def act_on_alarm(page: Page, row: Any, action: str, **fields: str) -> None:
    """Keyboard only: the action's button, its dialog's fields in order (or its button), Enter."""
    await focus_and_press(page, row.get_by_role("button", name=action, exact=True))
    dialog = page.get_by_role("dialog")  # modal: the only one
    await expect(dialog).to_have_accessible_name(re.compile(f"^{action} level_"))
    first = dialog.get_by_label(next(iter(fields))) if fields else dialog.get_by_role("button")
    await expect(first.first).to_be_focused()
    for label, value in fields.items():
        await dialog.get_by_label(label).fill(value)
    await page.keyboard.press("Enter")
    await expect(dialog).to_have_count(0)


async def raised_tank_alarm(
    hmi: Hmi, page: WatchedPage, person: str, condition: str
) -> tuple[Page, Any, str]:
    """The tank's alarms raised, ``person`` on the Alarms screen, the row of ``condition``,
    and an admin's token to read the server's record with."""
    admin = await hmi.token("admin")
    await set_tank_level(hmi, admin, TANK_LEVEL_HIGH + 500)
    screen = await page.log_in(hmi.plant.url, hmi.plant.people[person], "Alarms")
    return screen, alarm_row(screen, hmi.tank, condition), admin


async def test_an_operator_shelves_an_alarm_and_unshelves_it_but_may_not_take_it_out_of_service(
    hmi: Hmi, page: WatchedPage
) -> None:
    operator = hmi.plant.people["operator"]
    screen, row, admin = await raised_tank_alarm(hmi, page, "operator", "level_01")
    await expect(row.get_by_role("button", name="Shelve")).to_be_visible()
    # Out of service is a supervisor's: not offered, and the server refuses it anyway.
    await expect(screen.get_by_role("button", name="Out of service")).to_have_count(0)
    refused = await hmi.gql(
        REMOVE_FROM_SERVICE,
        await hmi.token("operator"),
        id=await row.get_attribute("data-alarm"),
        r="an operator's try",
    )
    assert refused["errors"][0]["extensions"]["code"] == "forbidden", refused

    await act_on_alarm(screen, row, "Shelve", Minutes="30", Reason="level probe recalibrated")
    await expect(row.locator(".state")).to_contain_text("shelved until")
    await expect(row.get_by_role("button", name="Unshelve")).to_be_visible()
    shelved = (await tank_alarms(hmi, admin))["level_01"]
    assert shelved["state"] == "shelved", shelved
    left = datetime.fromisoformat(shelved["shelvedUntil"]) - datetime.now(UTC)
    assert timedelta(minutes=29) < left <= timedelta(minutes=30), shelved
    entry = await last_recorded(hmi, admin, "Shelved", "level_01")
    assert entry["actor"] == operator.username, entry
    assert entry["detail"]["reason"] == "level probe recalibrated", entry
    await page.screenshot("alarm-shelved")

    await act_on_alarm(screen, row, "Unshelve")
    await expect(row.locator(".state")).not_to_contain_text("shelved")
    await expect(row.get_by_role("button", name="Shelve")).to_be_visible()
    unshelved = (await tank_alarms(hmi, admin))["level_01"]
    assert unshelved["state"] != "shelved", unshelved
    assert unshelved["shelvedUntil"] is None, unshelved
    entry = await last_recorded(hmi, admin, "Unshelved", "level_01")
    assert entry["actor"] == operator.username, entry


async def test_a_supervisor_takes_an_alarm_out_of_service_and_returns_it(
    hmi: Hmi, page: WatchedPage
) -> None:
    supervisor = hmi.plant.people["supervisor"]
    screen, row, admin = await raised_tank_alarm(hmi, page, "supervisor", "level_02")

    await act_on_alarm(screen, row, "Out of service", Reason="tank drained for cleaning")
    await expect(row.locator(".state")).to_have_text("out_of_service")
    # Out of service, it is neither acknowledged nor shelved: only returned.
    await expect(row.get_by_role("button")).to_have_text(["Return to service"])
    assert (await tank_alarms(hmi, admin))["level_02"]["state"] == "out_of_service"
    entry = await last_recorded(hmi, admin, "RemovedFromService", "level_02")
    assert entry["actor"] == supervisor.username, entry
    assert entry["detail"]["reason"] == "tank drained for cleaning", entry

    await act_on_alarm(screen, row, "Return to service")
    await expect(row.locator(".state")).not_to_have_text("out_of_service")
    await expect(row.get_by_role("button", name="Out of service")).to_be_visible()
    assert (await tank_alarms(hmi, admin))["level_02"]["state"] != "out_of_service"
    entry = await last_recorded(hmi, admin, "ReturnedToService", "level_02")
    assert entry["actor"] == supervisor.username, entry


async def test_a_flood_and_chattering_alarms_are_shown_and_the_journal_pages(
    hmi: Hmi, page: WatchedPage
) -> None:
    # The tank's eleven alarms raised three times within the minute: a flood in its area
    # at the first rise, and each alarm chattering at the third.
    screen, row, admin = await raised_tank_alarm(hmi, page, "operator", "level_01")
    for _ in range(CHATTER_ACTIVATIONS - 1):
        await set_tank_level(hmi, admin, 0)
        await set_tank_level(hmi, admin, TANK_LEVEL_HIGH + 500)

    flood = screen.get_by_role("status").filter(has_text="Alarm flood")
    await expect(flood).to_contain_text(f"Alarm flood in {area_of(hmi.tank)}")
    await expect(row.locator(".chattering")).to_have_text("chattering")
    tank_rows = screen.get_by_role("table", name="Active alarms").locator(
        "tr[data-alarm]", has_text=hmi.tank
    )
    await expect(tank_rows.locator(".chattering")).to_have_count(TANK_ALARMS)
    alarms = await tank_alarms(hmi, admin)
    assert all(alarm["chattering"] for alarm in alarms.values()), alarms
    floods = await journal(hmi, admin, 500, e="FloodStarted")
    assert area_of(hmi.tank) in {entry["area"] for entry in floods}, floods
    await page.screenshot("alarm-flood")

    # The journal a page at a time: the first 25 entries, then the next 25, as the server
    # holds them (with more after them), with no gap and no repeat at the page's end.
    await page.open("Overview")
    await page.open("Alarms")
    entries = await journal(hmi, admin, 2 * ALARM_JOURNAL_PAGE + 1)
    assert len(entries) > 2 * ALARM_JOURNAL_PAGE
    events = screen.get_by_role("table", name="Alarm journal").locator("tbody tr")
    for shown in (ALARM_JOURNAL_PAGE, 2 * ALARM_JOURNAL_PAGE):
        for column, key in ((2, "device"), (3, "condition"), (4, "event")):
            await expect(events.locator(f"td:nth-child({column})")).to_have_text(
                [entry[key] for entry in entries[:shown]]
            )
        await expect(screen.get_by_role("button", name="Next page")).to_be_visible()
        if shown == ALARM_JOURNAL_PAGE:
            await screen.get_by_role("button", name="Next page").click()


# -- the two-person rule -------------------------------------------------------------------


async def test_a_critical_write_waits_in_the_supervisors_inbox_and_is_approved(
    hmi: Hmi, browser_pair: tuple[WatchedPage, WatchedPage]
) -> None:
    operator_page, supervisor_page = browser_pair
    operator, supervisor = hmi.plant.people["requester"], hmi.plant.people["supervisor"]
    screen = await operator_page.log_in(hmi.plant.url, operator)
    await supervisor_page.log_in(hmi.plant.url, supervisor, "Approvals")
    await screen.get_by_role("button", name="Write line_setpoint").click()
    await screen.get_by_label("New value of line_setpoint").fill("1300")
    await screen.get_by_role("button", name="Request").click()
    await screen.get_by_label("TOTP code").fill(pyotp.TOTP(operator.totp_secret).now())
    await screen.get_by_role("button", name="Confirm").click()
    steps = screen.get_by_role("list", name="Command steps")
    await expect(steps).to_contain_text("ApprovalRequested")

    inbox = supervisor_page.page.get_by_role(
        "article", name=f"Approval of {hmi.device} line_setpoint"
    )
    await expect(inbox).to_contain_text(f"Requested by {operator.username}")
    await supervisor_page.screenshot("approvals")
    await inbox.get_by_label("Your TOTP code").fill(pyotp.TOTP(supervisor.totp_secret).now())
    await inbox.get_by_role("button", name="Approve").click()
    await expect(inbox).to_have_count(0)
    await expect(steps).to_contain_text("WriteSucceeded")
    await expect(steps.locator("li strong").filter(has_text="Approved")).to_have_count(1)
    assert hmi.simulator.model.speed_setpoint == 1300


@pytest_asyncio.fixture(loop_scope="module")
async def browser_pair(hmi: Hmi) -> AsyncIterator[tuple[WatchedPage, WatchedPage]]:
    async with watched_page(hmi.browser) as first, watched_page(hmi.browser) as second:
        yield first, second
        first.assert_clean(hmi.plant.url)
        second.assert_clean(hmi.plant.url)


# -- what roles shape ----------------------------------------------------------------------


async def test_a_viewer_is_offered_no_write_and_the_server_refuses_one_anyway(
    hmi: Hmi, page: WatchedPage
) -> None:
    screen = await page.log_in(hmi.plant.url, hmi.plant.people["viewer"])
    await expect(tag_row(screen, hmi.device, "speed").locator(".value")).not_to_have_text("—")
    await expect(screen.locator("button.write")).to_have_count(0)
    await expect(screen.locator("button.emergency")).to_have_count(0)
    await expect(screen.locator("#tabs a")).to_have_text(
        ["Overview", "Trends", "Alarms", "Commands"]
    )
    await page.open("Alarms")
    await expect(screen.get_by_role("table", name="Active alarms")).to_be_visible()
    await expect(screen.get_by_role("button", name="Acknowledge")).to_have_count(0)

    token = await hmi.token("viewer")
    body = await hmi.gql(
        'mutation($d: String!) { requestCommand(device: $d, tag: "speed_setpoint", value: 1)'
        " { commandId } }",
        token,
        d=hmi.device,
    )
    assert body["errors"][0]["extensions"]["code"] == "forbidden"


async def test_a_session_ended_by_an_admin_returns_to_login(hmi: Hmi, page: WatchedPage) -> None:
    operator = hmi.plant.people["operator"]
    screen = await page.log_in(hmi.plant.url, operator)
    admin = await hmi.token("admin")
    sessions = (await hmi.gql("{ sessions { sessionId username } }", admin))["data"]["sessions"]
    for session in sessions:
        if session["username"] == operator.username:
            ended = await hmi.gql(
                "mutation($u: String!, $s: String!) { endSession(username: $u, sessionId: $s) }",
                admin,
                u=operator.username,
                s=session["sessionId"],
            )
            assert ended["data"]["endSession"] is True

    # The live views end with the session (within the API's recheck), and so does the HMI.
    await expect(screen.get_by_role("form", name="Log in")).to_be_visible(timeout=2 * WAIT_MS)
    await expect(screen.get_by_role("alert")).to_contain_text("Session ended")
    await expect(screen.locator("#top")).to_be_hidden()


async def test_a_user_who_logs_out_is_back_at_login(hmi: Hmi, page: WatchedPage) -> None:
    await page.log_in(hmi.plant.url, hmi.plant.people["viewer"])
    await page.page.get_by_role("button", name="Log out").click()
    await expect(page.page.get_by_role("form", name="Log in")).to_be_visible()
    await expect(page.page.get_by_label("User name")).to_be_focused()
    await page.screenshot("login")


# The access token's life (15 min), past the share after which the HMI refreshes it (80 %).
PAST_REFRESH = "12:30"
REFRESH = "refreshToken(token"


async def test_the_access_token_is_refreshed_before_it_expires_unnoticed(
    hmi: Hmi, page: WatchedPage
) -> None:
    screen = page.page
    # The page's own clock, moved on below: the HMI's timer fires as it would at 12 min.
    await screen.clock.install()
    async with screen.expect_websocket() as connected:
        await page.log_in(hmi.plant.url, hmi.plant.people["viewer"])
    socket = await connected.value
    await expect(screen.locator("#link")).to_have_text("● live")
    first = await bearer_of_next_query(page, "Alarms")

    async with (
        socket.expect_event("framesent", lambda frame: REFRESH in frame),
        socket.expect_event("framereceived", lambda frame: "refreshToken" in frame) as answer,
    ):
        await screen.clock.fast_forward(PAST_REFRESH)
    refreshed = json.loads(await answer.value)["payload"]["data"]["refreshToken"]
    assert refreshed["accessToken"] != first

    # Still logged in, live, and the next query carries the new token, which the server takes.
    await expect(screen.locator("#who")).to_contain_text(hmi.plant.people["viewer"].username)
    await expect(screen.locator("#link")).to_have_text("● live")
    assert await bearer_of_next_query(page, "Commands") == refreshed["accessToken"]
    me = await hmi.gql("{ me { username } }", refreshed["accessToken"])
    assert me["data"]["me"]["username"] == hmi.plant.people["viewer"].username
    await expect(screen.get_by_role("form", name="Log in")).to_have_count(0)


async def bearer_of_next_query(page: WatchedPage, screen: str) -> str:
    """The access token of the first query the HMI sends over HTTP on opening ``screen``."""
    async with page.page.expect_request(
        lambda request: request.url.endswith("/graphql") and request.method == "POST"
    ) as sent:
        await page.open(screen)
    header = await (await sent.value).header_value("authorization")
    assert header is not None
    assert header.startswith("Bearer "), header
    return header.removeprefix("Bearer ")


# -- the live connection -------------------------------------------------------------------


async def test_the_live_view_reconnects_by_itself_when_the_server_comes_back(hmi: Hmi) -> None:
    api_port = urlsplit(hmi.plant.url).port
    assert api_port is not None
    async with Cable(api_port) as cable, watched_page(hmi.browser) as page:
        screen = await page.log_in(cable.url, hmi.plant.people["viewer"])
        link = screen.locator("#link")
        count = tag_row(screen, hmi.device, "produced_count").locator(".value")
        await expect(link).to_have_text("● live")
        await expect(count).not_to_have_text("—")

        # The server goes away: the page says so, and tries again by itself.
        await cable.unplug()
        await expect(link).to_have_text("○ reconnecting…")
        before = await count.text_content()
        await cable.plug()
        await expect(link).to_have_text("● live")
        await expect(count).not_to_have_text(before or "—")  # the parts counter moves on

        # Its attempts while the server was away are the only errors the browser logged.
        page.errors = [error for error in page.errors if "WebSocket connection to" not in error]
        page.assert_clean(cable.url)


# -- the auditor and the trends ------------------------------------------------------------


async def test_an_auditor_reads_a_commands_event_trail(hmi: Hmi, page: WatchedPage) -> None:
    # A command requested and left unconfirmed (it lapses, nothing is written).
    requested = await hmi.gql(
        'mutation($d: String!) { requestCommand(device: $d, tag: "speed_setpoint", value: 1200)'
        " { commandId } }",
        await hmi.token("operator"),
        d=hmi.device,
    )
    command_id = requested["data"]["requestCommand"]["commandId"]
    screen = await page.log_in(hmi.plant.url, hmi.plant.people["auditor"], "Commands")
    row = screen.locator(f'tr[data-command="{command_id}"]')
    await row.get_by_role("button", name="Trail").click()
    trail = screen.get_by_role("table", name="Event trail")
    await expect(trail).to_contain_text("ControlCommand.Requested v1")
    await page.screenshot("audit-trail")
    await screen.keyboard.press("Escape")

    await page.open("Audit")
    # The log's verification state: the chain's head, and the last checkpoint, which holds.
    verification = screen.get_by_role("region", name="Log verification")
    await expect(verification).to_contain_text("Chain head: position")
    await expect(verification.locator('[data-holds="true"]')).to_contain_text(
        "The log still holds the signed hash"
    )
    await screen.get_by_label("Command or alarm id").fill(command_id)
    await screen.get_by_role("button", name="Show trail").click()
    await expect(trail).to_contain_text("ControlCommand.Requested v1")
    await page.screenshot("audit")


async def test_a_trend_draws_the_history_and_appends_live_samples(
    hmi: Hmi, page: WatchedPage
) -> None:
    screen = await page.log_in(hmi.plant.url, hmi.plant.people["operator"], "Trends")
    await screen.get_by_label(f"{hmi.device} speed", exact=True).check()
    await screen.get_by_label(f"{hmi.device} motor_temperature").check()
    await screen.get_by_label("Range").select_option(label="Last 15 min")
    await screen.get_by_role("button", name="Show").click()
    legend = screen.locator(".u-legend")
    await expect(legend).to_contain_text(f"{hmi.device} speed rpm")
    chart = screen.get_by_label("Trend chart")
    first = int(await chart.get_attribute("data-points") or 0)
    assert first > 0  # the history of the last 15 minutes

    async def live_tail_appended() -> None:
        assert int(await chart.get_attribute("data-points") or 0) > first

    await eventually(live_tail_appended, timeout=WAIT_MS / 1000)
    await page.screenshot("trends")


# The local times typed in the custom range: the last two hours, to the next minute.
CUSTOM_RANGE = """() => {
  const local = (ms) => new Date(ms - new Date(ms).getTimezoneOffset() * 60000)
    .toISOString().slice(0, 16);
  const end = Math.ceil(Date.now() / 60000) * 60000 + 60000;
  return [local(end - 2 * 3600000), local(end)];
}"""


async def test_a_custom_trend_range_asks_for_buckets_fitted_to_the_chart(
    hmi: Hmi, page: WatchedPage
) -> None:
    screen = await page.log_in(hmi.plant.url, hmi.plant.people["operator"], "Trends")
    await screen.get_by_label(f"{hmi.device} speed", exact=True).check()
    await screen.get_by_label("Range").select_option(label="Custom")
    start, end = await screen.evaluate(CUSTOM_RANGE)
    await screen.get_by_label("From", exact=True).fill(start)
    await screen.get_by_label("To", exact=True).fill(end)
    chart = screen.get_by_label("Trend chart")
    width = await chart.evaluate("(box) => box.clientWidth")
    async with screen.expect_response(
        lambda response: (
            response.url.endswith("/graphql") and "history(" in (response.request.post_data or "")
        )
    ) as answered:
        await screen.get_by_role("button", name="Show").click()
    response = await answered.value
    asked = response.request.post_data_json["variables"]
    buckets = (await response.json())["data"]["history"]["buckets"]

    # The range typed, in the browser's time zone, is the range asked for.
    local = "(text) => new Date(text).toISOString()"
    assert asked["f"] == await screen.evaluate(local, start)
    assert asked["to"] == await screen.evaluate(local, end)
    # About one bucket per pixel of the chart: two hours over ~1,300 pixels.
    span = (datetime.fromisoformat(asked["to"]) - datetime.fromisoformat(asked["f"])).seconds
    assert span == 2 * 3600
    assert asked["b"] == math.ceil(span / width) > 1, (asked, width)
    assert 0 < len(buckets) <= width
    await expect(screen.locator(".u-legend")).to_contain_text(f"{hmi.device} speed rpm")
    await expect(chart).to_have_attribute("data-points", str(len(buckets)))
    assert await chart.locator("canvas").evaluate("(c) => c.clientWidth") == width


# -- the explorer --------------------------------------------------------------------------


async def test_the_graphql_explorer_works_from_the_plant_cores_own_files(
    hmi: Hmi, page: WatchedPage
) -> None:
    screen = page.page
    await screen.goto(hmi.plant.url + "/graphql")
    # GraphiQL rendered, and it read the schema by introspection: the docs list Query.
    await expect(screen.locator(".graphiql-container")).to_be_visible()
    await screen.get_by_role("button", name="Show Documentation Explorer").click()
    await expect(screen.locator(".graphiql-doc-explorer")).to_contain_text("Query")
    await page.screenshot("explorer")
    # Nothing came from a CDN: the page fixture checks every request's origin.
    assert any("/vendor/graphiql/graphiql.min.js" in url for url in page.requested)


# -- the overview under load ---------------------------------------------------------------

# The paint meter's figures (hmi/static/js/paint-meter.js): updates received and shown,
# and the percentiles of the lag from each update's message to the frame that showed it.
PAINT_FIGURES = """() => {
  const meter = window.plantcoreHmi.paintMeter;
  const lags = [...meter.lagsMs].sort((a, b) => a - b);
  const at = (share) => lags[Math.min(lags.length - 1, Math.floor(share * lags.length))];
  return { received: meter.received, shown: meter.shown, measured: lags.length,
           seconds: (performance.now() - meter.since) / 1000,
           p50: at(0.5), p99: at(0.99), max: lags.at(-1) };
}"""
# Updates measured: 6 s of the nominal load (5 devices x 10 tags x 10 a second).
LOAD_UPDATES = 3000
LOAD_REPORT = Path("var/hmi-screenshots/overview-load.json")


async def test_the_overview_keeps_up_with_five_devices_of_ten_tags_ten_times_a_second(
    hmi: Hmi, page: WatchedPage
) -> None:
    screen = await page.log_in(hmi.plant.url, hmi.plant.people["viewer"])
    async with contextlib.AsyncExitStack() as load_line:
        for port in hmi.load_ports.values():
            await load_line.enter_async_context(ModbusSimulator(port=port, tick_seconds=0.05))
        for device in hmi.load_ports:
            state = screen.locator(f'[data-device="{device}"] .state')
            await expect(state).to_have_text("connected", timeout=3 * WAIT_MS)
            await expect(tag_row(screen, device, "speed").locator(".value")).not_to_have_text("—")

        await screen.evaluate("() => window.plantcoreHmi.paintMeter.reset()")
        await screen.wait_for_function(
            f"() => window.plantcoreHmi.paintMeter.shown >= {LOAD_UPDATES}",
            timeout=6 * WAIT_MS,
        )
        figures = await screen.evaluate(PAINT_FIGURES)
        await page.screenshot("overview")

    rate = figures["received"] / figures["seconds"]
    nominal = LOAD_DEVICES * len(LOAD_TAGS) / LOAD_POLL_SECONDS
    report = {**figures, "updates_per_second": round(rate)}
    await asyncio.to_thread(LOAD_REPORT.write_text, json.dumps(report, indent=2) + "\n")
    print(f"overview under load: {report}")
    # The load was there: the plant core delivered most of it even on a busy machine...
    assert rate >= nominal / 2, report
    # ...and the page kept up: each update on screen within 250 ms, at the 99th percentile.
    assert figures["p99"] < LAG_P99_MS, report
