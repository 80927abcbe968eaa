"""Fault drill: the plant core killed at every step of a command's life, 100 commands in all.

Each round stages four commands, each at another step of its life, and kills
the plant core (SIGKILL) while they stand there:

- ``requested``: asked for, never confirmed;
- ``confirmed``: the kill lands as the confirmation's answer arrives, before
  the dispatcher has acted on it (or just after: where each command really was
  is read from the event store after the kill, not assumed);
- ``dispatched``: ``WriteDispatched`` recorded, the write queued behind a slow
  one on its device;
- ``written``: the press applied the write (it is in the press's own write
  log) and holds its answer back (``--write-reply-delay-ms``), so the outcome
  is not recorded yet.

Then the plant core is started again, and the next round begins. After the
last one, every command must reach exactly one terminal event (a write of
unknown outcome settled by reading back, a stale one expired), and the presses'
write logs are the ground truth: no write without a ``Confirmed`` event, never
two writes of one command, and a write recorded as succeeded if and only if
the press applied it. Each command writes a value of its own, so a line of a
write log names its command. The figures go to ``var/drills/commands.json``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest

from api.secrets import SecretBox
from domain.permissions import PLANT_SCOPE
from eventstore.roles import PlantRoles
from plantcore.open_application import open_application
from plantcore.operators import create_operator, enrol_with_token
from plantfile.catalog_builder import tag_catalog
from plantfile.plant import PlantConfig
from simulators.write_log import AppliedWrite, read_write_log
from tests.drills.figures import record_figures
from tests.drills.stack import DrillStack, PlantSpec, Press
from tests.e2e.test_plant_in_a_box import CONFIRM, LOGIN, REQUEST
from tests.support import eventually

pytestmark = [pytest.mark.drill, pytest.mark.timeout(480)]

ROUNDS = 25  # four commands each: 100 command runs
STEPS = ("requested", "confirmed", "dispatched", "written")
TAG = "speed_setpoint"
# Slow presses hold a write's answer back long enough for the rest of a round.
REPLY_DELAY_MS = 4000
SLOW_PRESSES = ("slow-1", "slow-2")
QUICK_PRESS = "quick-1"
# Each confirms one command per TOTP step, with one step ahead at the start: enough of
# them that a round never waits for the clock.
OPERATORS = 20
PASSWORD = "drill password, long enough"
TERMINAL_EVENTS = frozenset(
    {"Rejected", "Expired", "Cancelled", "ApprovalDeclined", "WriteSucceeded", "WriteFailed"}
)
TOTP_STEP_SECONDS = 30
STAGE_TIMEOUT_SECONDS = 15.0


@dataclass
class Signer:
    """An operator whose TOTP codes the drill computes; each step confirms one command only."""

    username: str
    totp: pyotp.TOTP
    token: str = ""
    last_step: int = -1

    def next_code(self) -> str | None:
        """A code of a step not used yet that the plant core accepts now, if there is one."""
        now = int(time.time()) // TOTP_STEP_SECONDS
        step = max(self.last_step + 1, now)
        if step > now + 1:  # the plant core accepts one step ahead at most
            return None
        self.last_step = step
        return str(self.totp.generate_otp(step))


@dataclass
class Command:
    step: str  # the step it is staged at
    device: str
    value: int
    signer: Signer
    code: str | None  # None: never to be confirmed
    id: str = ""
    caught_at: str = ""  # where the event store says it was when the plant core died


@dataclass
class CommandDrill:
    stack: DrillStack
    signers: list[Signer]
    http: httpx.AsyncClient
    values: Iterator[int] = field(default_factory=lambda: count(1))
    commands: list[Command] = field(default_factory=list)
    restarts: list[float] = field(default_factory=list)

    # -- the commands --------------------------------------------------------------------

    async def gql(self, query: str, token: str, **variables: Any) -> Any:
        response = await self.http.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {token}"} if token else {},
        )
        body = response.json()
        assert "errors" not in body, body
        return body["data"]

    async def login(self) -> None:
        for signer in self.signers:
            data = await self.gql(LOGIN, "", u=signer.username, p=PASSWORD)
            signer.token = data["login"]["accessToken"]

    async def request(self, step: str, device: str, *, confirmed: bool = True) -> Command:
        signer, code = await self._signer() if confirmed else (self.signers[0], None)
        value = next(self.values)
        command = Command(step, device, value, signer, code)
        data = await self.gql(REQUEST, signer.token, d=device, t=TAG, v=value)
        command.id = data["requestCommand"]["commandId"]
        self.commands.append(command)
        return command

    async def confirm(self, command: Command) -> None:
        assert command.code is not None
        await self.gql(CONFIRM, command.signer.token, id=command.id, code=command.code)

    async def _signer(self) -> tuple[Signer, str]:
        """The first operator with a code to spare; when none has, wait for the next step."""
        for _ in range(2):
            for signer in self.signers:
                code = signer.next_code()
                if code is not None:
                    return signer, code
            await asyncio.sleep(TOTP_STEP_SECONDS - time.time() % TOTP_STEP_SECONDS)
        raise AssertionError("no operator has a TOTP step to spare")

    # -- one round -----------------------------------------------------------------------

    async def round(self, number: int) -> None:
        slow = SLOW_PRESSES[number % len(SLOW_PRESSES)]
        written = await self.request("written", slow)
        await self.confirm(written)
        await eventually(partial(self.applied, written), timeout=STAGE_TIMEOUT_SECONDS)
        dispatched = await self.request("dispatched", slow)
        await self.confirm(dispatched)
        await eventually(partial(self.dispatched, dispatched), timeout=STAGE_TIMEOUT_SECONDS)
        # Asked for last, so that its confirmation window is still open at the kill.
        requested = await self.request("requested", QUICK_PRESS, confirmed=False)
        confirmed = await self.request("confirmed", QUICK_PRESS)
        await self.confirm(confirmed)
        self.stack.plantcore.kill()  # as its answer arrives
        await eventually(self.plantcore_sessions_gone)
        for command in (requested, written, dispatched, confirmed):
            command.caught_at = await self.where(command)
        started = time.monotonic()
        self.stack.plantcore.start()
        self.restarts.append(time.monotonic() - started)

    async def plantcore_sessions_gone(self) -> None:
        """What the killed plant core had sent PostgreSQL is committed or rolled back by now."""
        rows = await self.stack.fetch(
            "SELECT pid FROM pg_stat_activity WHERE usename = $1", PlantRoles.named().runtime
        )
        assert not rows, rows

    async def applied(self, command: Command) -> None:
        assert command.value in [write.value for write in self.writes(command.device)]

    async def dispatched(self, command: Command) -> None:
        assert "WriteDispatched" in await self.events(command)

    async def where(self, command: Command) -> str:
        """The step the event store shows ``command`` at."""
        last = (await self.events(command))[-1]
        if last in TERMINAL_EVENTS:
            return "settled"
        if last == "WriteDispatched":
            written = command.value in [w.value for w in self.writes(command.device)]
            return "written" if written else "dispatched"
        return {"ChallengeIssued": "requested", "Confirmed": "confirmed"}[last]

    # -- the record ----------------------------------------------------------------------

    async def events(self, command: Command) -> list[str]:
        rows = await self.stack.fetch(
            "SELECT topic FROM plantapplication_events WHERE originator_id = $1"
            " ORDER BY originator_version",
            command.id,
        )
        return [row["topic"].rsplit(".", 1)[-1] for row in rows]

    async def history(self) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        rows = await self.stack.fetch(
            "SELECT originator_id::text AS id, topic, state FROM plantapplication_events"
            " WHERE originator_id = ANY($1::uuid[]) ORDER BY originator_id, originator_version",
            [command.id for command in self.commands],
        )
        events: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for row in rows:
            name = row["topic"].rsplit(".", 1)[-1]
            events.setdefault(row["id"], []).append((name, json.loads(row["state"])))
        return events

    def writes(self, device: str) -> list[AppliedWrite]:
        log = self.stack.presses[device].write_log
        assert log is not None
        return [write for write in read_write_log(log) if write.tag == TAG]

    async def all_settled(self) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        history = await self.history()
        for command in self.commands:
            names = [name for name, _ in history[command.id]]
            ended = [name for name in names if name in TERMINAL_EVENTS]
            assert len(ended) == 1, f"{command.step} command {command.id}: {names}"
        return history


def drill_plant() -> PlantSpec:
    return PlantSpec(
        presses=[
            *(Press(d, write_log=True, write_reply_delay_ms=REPLY_DELAY_MS) for d in SLOW_PRESSES),
            Press(QUICK_PRESS, write_log=True),
        ],
        poll_seconds=0.5,
        # The press answers a write late on purpose: the device must not time out first.
        device_timeout_seconds=REPLY_DELAY_MS / 1000 + 3,
        settings={
            # A command asked for and never confirmed expires 5 s later; one confirmed
            # but not dispatched within 2 s (the plant core was down) expires as stale.
            "PLANTCORE_COMMAND_CONFIRM_SECONDS": "5",
            "PLANTCORE_COMMAND_DISPATCH_SECONDS": "2",
            "PLANTCORE_COMMAND_RATE_PER_MINUTE": "600",
            "PLANTCORE_LOGIN_RATE_PER_MINUTE": "600",
        },
    )


def make_signers(stack: DrillStack) -> list[Signer]:
    """Operators who may command every press, enrolled as each would with their token."""
    plant = PlantConfig.model_validate(stack.plant_file())
    app = open_application(stack.runtime_url, tag_catalog(plant), plant_id=plant.plant_id)
    box = SecretBox.from_text(stack.secrets_key)
    try:
        signers = []
        for number in range(1, OPERATORS + 1):
            grant = create_operator(
                app,
                username=f"operator-{number:02d}",
                full_name=f"Drill Operator {number}",
                roles=["operator"],
                scopes=[PLANT_SCOPE],
                password=PASSWORD,
                actor="drill",
            )
            secret = enrol_with_token(
                app, box, username=grant.username, enrolment_token=grant.enrolment_token
            )
            signers.append(Signer(grant.username, pyotp.TOTP(secret)))
        return signers
    finally:
        app.close()


async def test_no_kill_writes_a_command_twice_or_without_its_confirmation(tmp_path: Path) -> None:
    with DrillStack("commands", tmp_path, drill_plant()) as stack:
        await stack.prepare_database()
        signers = make_signers(stack)
        stack.start_plantcore()
        async with httpx.AsyncClient(base_url=stack.plantcore.url, timeout=10) as http:
            drill = CommandDrill(stack, signers, http)
            await drill.login()
            started = time.monotonic()
            for number in range(ROUNDS):
                await drill.round(number)
            killed = time.monotonic()
            history = await eventually(drill.all_settled, timeout=60, interval=0.5)
            settled = time.monotonic()

        writes = {
            device: [write.value for write in drill.writes(device)] for device in stack.presses
        }
        outcomes: Counter[tuple[str, str]] = Counter()
        for command in drill.commands:
            names = [name for name, _ in history[command.id]]
            applied = writes[command.device].count(command.value)
            assert applied <= 1, f"{command} written {applied} times"
            if applied:
                assert "Confirmed" in names, f"{command} written without confirmation: {names}"
            # The record agrees with the press: succeeded if and only if it was written.
            assert ("WriteSucceeded" in names) == bool(applied), f"{command}: {names}"
            outcomes[command.caught_at, names[-1]] += 1
        # Every write the presses applied was one of the drill's commands.
        values = {command.value for command in drill.commands}
        assert all(set(applied) <= values for applied in writes.values()), writes

        caught = Counter(command.caught_at for command in drill.commands)
        record_figures(
            "commands",
            {
                "commands": len(drill.commands),
                "kills": ROUNDS,
                "caught_at": dict(caught),
                "outcomes": {f"{step} -> {end}": n for (step, end), n in sorted(outcomes.items())},
                "writes_applied": sum(len(applied) for applied in writes.values()),
                "restart_seconds_mean": round(sum(drill.restarts) / len(drill.restarts), 1),
                "restart_seconds_max": round(max(drill.restarts), 1),
                "rounds_seconds": round(killed - started, 1),
                "seconds_to_settle_after_last_restart": round(settled - killed, 1),
            },
        )
        assert len(drill.commands) == 4 * ROUNDS
        assert all(caught[step] for step in STEPS), caught
