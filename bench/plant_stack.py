"""A whole plant core for the end-to-end benchmarks, and the HMIs that use it.

:func:`plant_stack` runs what ``plantcore run`` runs (:class:`PlantRuntime`:
supervisors, buffer, projections, event log tail, dispatcher, API on a loopback
port of its own) in this process, on a database of the run's own, for the
devices it is given. It shares NATS and Redis with everything else on the
machine, so its durable consumers, event stream and devices have names of the
run's own, and are deleted or purged at the end.

:meth:`PlantStack.hmi` makes an operator signed in as an HMI would be: a
TOTP secret of its own and an access token of an open session. The login
itself (Argon2) is not what the benchmarks measure, so the session is opened
through the application as a login would open it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import nats
import pyotp
import redis.asyncio as aioredis
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from api.credentials import TokenSettings, issue_token, new_session_id
from api.secrets import SecretBox, generate_key
from bench.alarm_burst import scratch_database
from bench.common import BenchConfig, unique_name
from domain.application import CommandPolicy
from domain.messages import STATUS_SUBJECT, TELEMETRY_SUBJECT
from plantcore.runtime import PlantRuntime, RuntimeConfig
from plantfile.loader import load_plant_file
from plantfile.plant import AnyDevice, PlantConfig
from plantfile.protocols.modbus import ModbusDevice
from projections.dead_letter import DEADLETTER_STREAM, DEADLETTER_SUBJECT_PREFIX
from projections.live_state import DEVICES_KEY, LIVE_KEY, STATUS_KEY

REDIS_URL = "redis://127.0.0.1:6379/0"
DEMO_PLANT = Path(__file__).resolve().parents[1] / "config" / "demo-plant.yaml"
PLACEHOLDER = "unused-by-the-benchmark"
# The durable consumers a runtime makes on the shared streams, by stream.
DURABLES = {"TELEMETRY": ("live-state", "history"), "ALARMS": ("alarm-recorder",)}


def modbus_press(device: str, port: int) -> ModbusDevice:
    """The demo plant's Modbus press, named ``device`` and pointed at a simulator on ``port``."""
    press = next(d for d in load_plant_file(DEMO_PLANT).devices if isinstance(d, ModbusDevice))
    return press.model_copy(
        update={
            "id": device,
            "modbus": press.modbus.model_copy(update={"port": port}),
            "simulate": False,  # the benchmark runs the simulator in a process of its own
        }
    )


@dataclass(frozen=True, slots=True)
class Hmi:
    """An operator signed in: what an HMI holds."""

    username: str
    token: str
    totp_secret: str


@dataclass(frozen=True, slots=True)
class PlantStack:
    runtime: PlantRuntime
    tokens: TokenSettings
    secrets: SecretBox

    @property
    def ws_url(self) -> str:
        return self.runtime.api_url.replace("http://", "ws://") + "/graphql"

    async def hmi(self, scope: str = "plant") -> Hmi:
        """A new operator of role ``operator`` on ``scope``, enrolled and signed in."""
        return await asyncio.to_thread(self._signed_in_operator, scope)

    def _signed_in_operator(self, scope: str) -> Hmi:
        app = self.runtime.app
        assert app is not None
        username, secret, now = unique_name("bench_hmi"), pyotp.random_base32(), datetime.now(UTC)
        app.register_operator(
            username=username,
            full_name="Bench HMI",
            roles=["operator"],
            password_hash=PLACEHOLDER,
            totp_secret_sealed=self.secrets.seal(secret, username=username),
            actor="bench",
            at=now,
        )
        app.grant_permission(username=username, scope=scope, actor="bench", at=now)
        session_id = new_session_id()
        app.log_in(
            username=username,
            password_matches=True,
            source="127.0.0.1",
            session_id=session_id,
            refresh_hash=PLACEHOLDER,
            at=now,
        )
        issued = issue_token(
            self.tokens, username=username, session_id=session_id, roles=("operator",), now=now
        )
        return Hmi(username, issued.token, secret)


@contextlib.asynccontextmanager
async def plant_stack(
    config: BenchConfig, devices: Sequence[AnyDevice], *, poll_seconds: float = 1.0
) -> AsyncIterator[PlantStack]:
    """A running plant core for ``devices``, stopped and cleaned up at the end."""
    prefix = unique_name("bench") + "-"
    events_stream, events_subjects = f"EVENTS-{prefix[:-1]}", f"plant.bench-events.{prefix[:-1]}"
    plant = PlantConfig(plant_id="bench", poll_seconds=poll_seconds, devices=list(devices))
    tokens = TokenSettings(secret=generate_key() * 2, audience="plantcore")
    secrets = SecretBox.from_text(generate_key())
    with scratch_database(config.database_url) as database_url:
        runtime = PlantRuntime(
            RuntimeConfig(
                database_url=database_url,
                nats_url=config.nats_url,
                redis_url=REDIS_URL,
                plant=plant,
                tokens=tokens,
                secrets=secrets,
                http_host="127.0.0.1",
                http_port=0,
                consumer_prefix=prefix,
                events_stream=events_stream,
                events_subject_prefix=events_subjects,
                # The shared stream holds others' telemetry; this run's is all it needs.
                projections_start="new",
                # Benchmarks confirm hundreds of commands a minute per HMI.
                command_policy=CommandPolicy(rate_limit=600),
                # A database of the run's own, whose tables the runtime creates.
                allow_owner=True,
            )
        )
        ready = asyncio.Event()

        async def on_ready(_: PlantRuntime) -> None:
            ready.set()

        running = asyncio.create_task(runtime.run(on_ready))
        try:
            waiting = asyncio.create_task(ready.wait())
            await asyncio.wait({running, waiting}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            if running.done():
                running.result()  # raises what stopped it
            if not ready.is_set():
                raise RuntimeError("the plant core did not start within 60 s")
            yield PlantStack(runtime, tokens, secrets)
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            await _forget(config, prefix, events_stream, [device.id for device in devices])


async def _forget(config: BenchConfig, prefix: str, events_stream: str, devices: list[str]) -> None:
    """Delete the run's consumers, event stream, telemetry and live state."""
    nc = await nats.connect(config.nats_url)
    try:
        js = nc.jetstream()
        for stream, durables in DURABLES.items():
            for durable in durables:
                with contextlib.suppress(NotFoundError):
                    await js.delete_consumer(stream, prefix + durable)
                with contextlib.suppress(NotFoundError):
                    subject = f"{DEADLETTER_SUBJECT_PREFIX}.{prefix}{durable}"
                    await js.purge_stream(DEADLETTER_STREAM, subject=subject)
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(events_stream)
        for device in devices:
            for subject in (TELEMETRY_SUBJECT, STATUS_SUBJECT):
                with contextlib.suppress(NatsError):
                    await js.purge_stream("TELEMETRY", subject=subject.format(device=device))
    finally:
        await nc.close()
    redis = aioredis.from_url(REDIS_URL)
    try:
        for device in devices:
            await redis.delete(LIVE_KEY.format(device=device), STATUS_KEY.format(device=device))
            await redis.srem(DEVICES_KEY, device)
    finally:
        await redis.aclose()
