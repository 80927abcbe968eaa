"""A drill's whole plant, every part a process of its own that the drill may stop or kill.

Private PostgreSQL, Redis and NATS (:mod:`tests.private_services`) on spare
ports, a ``python -m simulators modbus`` per device, and ``python -m plantcore
run`` against them as the runtime role ``plantcore db init`` made, with its
settings in its environment and its secrets in files. Nothing of the machine's
shared services is touched. Every process is stopped when the stack closes,
whatever happened, the plant core first.

The drill looks at the plant the way an operator would: ``/metrics`` and
``/health``, the history and the event store in PostgreSQL, the live state in
Redis, the streams in NATS.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import asyncpg
import httpx
import nats
import psycopg
import redis.asyncio as aioredis
import yaml
from nats.js.api import StreamInfo
from prometheus_client.parser import text_string_to_metric_families

from api.secrets import generate_key
from eventstore.roles import PlantRoles
from plantcore.db_init import initialise_database
from simulators.modbus_server import PRESS_REGISTERS, READ_SEQUENCE
from support.private_file import create_private
from tests.drills.figures import FIGURES_DIR
from tests.drills.processes import PlantcoreProcess, SimulatedPress
from tests.private_services import (
    PrivateNats,
    PrivatePostgres,
    PrivateRedis,
    private_nats,
    private_postgres,
    private_redis,
)

PLANT_DATABASE = "plant"
# The press's own registers and the sequence the drills count polls by.
DRILL_TAGS: tuple[dict[str, Any], ...] = tuple(
    register.tag.model_dump(mode="json", exclude_defaults=True)
    for register in (*PRESS_REGISTERS, READ_SEQUENCE)
)


@dataclass(frozen=True)
class Press:
    """One device of the drill's plant: its simulator's options and its plant-file extras."""

    device: str
    write_log: bool = False
    write_reply_delay_ms: int = 0
    # Added to the device's block of the plant file (a comm_loss_alarm, say).
    block: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PlantSpec:
    presses: Sequence[Press]
    poll_seconds: float
    # The device's Modbus timeout: a press slower to answer a write must stay within it.
    device_timeout_seconds: float = 2.0
    # Added to the plant file's top level (reconnect keys, say).
    plant: Mapping[str, Any] = field(default_factory=dict)
    # PLANTCORE_* settings beyond the ones every drill needs.
    settings: Mapping[str, str] = field(default_factory=dict)


class DrillStack:
    """``with DrillStack(name, root, spec) as stack``: every service and press started, not
    yet the plant core (a drill may prepare its database first): :meth:`start_plantcore`.

    Should the drill fail, every process's log is copied to ``var/drills/<name>-logs/``
    before the stack's directory goes, for CI to keep.
    """

    def __init__(self, name: str, root: Path, spec: PlantSpec) -> None:
        self.name = name
        self.root = root
        self.spec = spec
        self.postgres: PrivatePostgres = private_postgres(root / "postgres")
        self.redis: PrivateRedis = private_redis(root / "redis")
        self.nats: PrivateNats = private_nats(root / "nats")
        self.presses: dict[str, SimulatedPress] = {
            press.device: SimulatedPress(
                root / "presses",
                press.device,
                write_log=root / "presses" / f"{press.device}-writes.jsonl"
                if press.write_log
                else None,
                write_reply_delay_ms=press.write_reply_delay_ms,
            )
            for press in spec.presses
        }
        self.runtime_url = ""
        # Seals the operators' TOTP secrets: a drill that makes operators needs it too.
        self.secrets_key = generate_key()
        self._plantcore: PlantcoreProcess | None = None
        self._exits = contextlib.ExitStack()

    # -- the parts -------------------------------------------------------------------------

    def __enter__(self) -> Self:
        try:
            for service in (self.postgres, self.redis, self.nats, *self.presses.values()):
                self._exits.enter_context(service)
            self._exits.callback(self._stop_plantcore)
        except BaseException:
            self._exits.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self._exits.close()
        finally:
            if exc is not None:
                self._keep_logs()

    def _keep_logs(self) -> None:
        kept = FIGURES_DIR / f"{self.name}-logs"
        shutil.rmtree(kept, ignore_errors=True)
        for log in self.root.rglob("*.log"):
            target = kept / log.relative_to(self.root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log, target)
        print(f"{self.name} drill failed: its processes' logs are in {kept}")

    @property
    def admin_url(self) -> str:
        """The plant's database as the superuser: what the drill reads and checks with."""
        return self.postgres.url.rsplit("/", 1)[0] + f"/{PLANT_DATABASE}"

    async def prepare_database(self) -> None:
        """``plantcore db init`` on a database of the plant's own; keeps the runtime's URL."""
        with psycopg.connect(self.postgres.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {PLANT_DATABASE}")
        initialised = await initialise_database(self.admin_url, PlantRoles.named())
        self.runtime_url = initialised.runtime_url

    @property
    def plantcore(self) -> PlantcoreProcess:
        assert self._plantcore is not None, "start_plantcore() first"
        return self._plantcore

    def start_plantcore(self) -> PlantcoreProcess:
        """Write the plant file and the secrets, and start the plant core (once)."""
        assert self.runtime_url, "prepare_database() first"
        plant_file = self.root / "plant.yaml"
        plant_file.write_text(yaml.safe_dump(self.plant_file()), encoding="utf-8")
        settings = {
            "PLANTCORE_DATABASE_URL": self.runtime_url,
            "PLANTCORE_NATS_URL": self.nats.url,
            "PLANTCORE_REDIS_URL": self.redis.url,
            "PLANTCORE_PLANT_FILE": str(plant_file),
            "PLANTCORE_STATE_DIR": str(self.root / "state"),
            "PLANTCORE_JWT_SECRET_FILE": str(self._secret("jwt.key", secrets.token_urlsafe(48))),
            "PLANTCORE_SECRETS_KEY_FILE": str(self._secret("secrets.key", self.secrets_key)),
            **self.spec.settings,
        }
        self._plantcore = PlantcoreProcess(self.root, settings)
        self._plantcore.start()
        return self._plantcore

    def plant_file(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "plant_id": "drill",
            "poll_seconds": spec.poll_seconds,
            **spec.plant,
            "devices": [
                {
                    "id": press.device,
                    "protocol": "modbus",
                    "area": "drill",
                    "modbus": {
                        "host": "127.0.0.1",
                        "port": self.presses[press.device].port,
                        "device_id": 1,
                        "timeout_seconds": spec.device_timeout_seconds,
                    },
                    "tags": list(DRILL_TAGS),
                    **press.block,
                }
                for press in spec.presses
            ],
        }

    def _secret(self, name: str, value: str) -> Path:
        path = self.root / "secrets" / name
        path.parent.mkdir(mode=0o700, exist_ok=True)
        create_private(path, value.encode())
        return path

    def _stop_plantcore(self) -> None:
        if self._plantcore is not None:
            self._plantcore.stop()

    # -- looking at the plant ----------------------------------------------------------------

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        """A query on the plant's database, on a connection of its own (PostgreSQL may restart)."""
        conn = await asyncpg.connect(self.admin_url, timeout=5)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    async def metrics(self) -> dict[str, float]:
        """``/metrics`` as ``name{label="value",...}`` → value (labels sorted)."""
        async with httpx.AsyncClient(base_url=self.plantcore.url, timeout=5) as http:
            text = (await http.get("/metrics")).text
        figures = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                figures[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return figures

    @contextlib.asynccontextmanager
    async def live_state(self) -> Any:
        client = aioredis.from_url(self.redis.url, decode_responses=True)
        try:
            yield client
        finally:
            await client.aclose()

    async def stream_info(self, stream: str, subjects: str) -> StreamInfo:
        nc = await nats.connect(self.nats.url, connect_timeout=5, max_reconnect_attempts=0)
        try:
            return await nc.jetstream().stream_info(stream, subjects_filter=subjects)
        finally:
            await nc.close()
