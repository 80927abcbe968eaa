"""A write the dispatcher gave up on during a NATS outage never reaches the PLC afterwards.

While NATS is away, nats-py keeps what it publishes and sends it once the server
is back. A write request sent during an outage longer than the dispatcher's
wait is therefore delivered to the supervisor after the dispatcher has recorded
it as failed. Here the outage is real (a NATS server of the test's own, stopped
and started again by its PID), the supervisor drives a real Modbus simulator,
and the command is recorded in PostgreSQL.

The dispatcher, the supervisor's write service and a spy share one connection,
as they can in one plant core: on reconnecting, nats-py subscribes again before
it sends what it kept, so the held-back request reaches the supervisor for sure.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from devices.drivers.modbus import ModbusDriver
from devices.nats_bridge import serve_writes
from devices.supervisor import DeviceSupervisor, SupervisionPolicy
from domain.application import PlantApplication
from domain.command import CommandStatus
from domain.messages import (
    WRITE_SUBJECT,
    ConnectionState,
    WriteErrorKind,
    WriteReply,
    WriteRequest,
)
from eventstore.executor import StoreExecutor
from plantcore.open_application import open_application
from plantfile.catalog_builder import device_catalog
from plantfile.protocols.modbus import ModbusDevice
from reactors.command_dispatcher import CommandDispatcher
from simulators.modbus_server import ModbusSimulator
from support.clock import utc_now
from tests.integration.devices.conftest import STEADY_RPM, press_config
from tests.support import eventually, free_port, nats_server
from tests.unit.devices.fakes import RecordingSink
from tests.unit.reactors.command_plant import MemoryPosition

pytestmark = pytest.mark.integration

FAST = SupervisionPolicy(poll_seconds=0.1, backoff_base=0.05, backoff_cap=0.2)
WRITE_TIMEOUT = 1.5
REQUESTED_RPM = 1500


@dataclass
class WriteSpy:
    """Every write request on the device's subject and every reply to one, as NATS carries them."""

    requests: dict[str, WriteRequest] = field(default_factory=dict)  # by reply subject
    replies: dict[str, WriteReply] = field(default_factory=dict)

    async def on_request(self, msg: Msg) -> None:
        self.requests[msg.reply] = WriteRequest.decode(msg.data)

    async def on_reply(self, msg: Msg) -> None:
        with contextlib.suppress(ValueError):  # other replies on the inbox: not ours
            self.replies[msg.subject] = WriteReply.decode(msg.data)

    def reply_to(self, op: str) -> WriteReply:
        """The reply to the one request of ``op`` (an AssertionError until it is seen)."""
        inboxes = [inbox for inbox, request in self.requests.items() if request.op == op]
        assert len(inboxes) == 1, f"{op} requests seen: {len(inboxes)}"
        assert inboxes[0] in self.replies, f"no reply to the {op} yet"
        return self.replies[inboxes[0]]


def register_and_confirm(app: PlantApplication, device: str) -> UUID:
    now = utc_now()
    app.register_operator(
        username="ana", full_name="Ana", roles=["operator"], password_hash="h",
        totp_secret_sealed="s", actor="admin", at=now,
    )  # fmt: skip
    app.grant_permission(username="ana", scope="plant", actor="admin", at=now)
    ticket = app.request_command(
        actor="ana", device=device, tag="speed_setpoint", value=REQUESTED_RPM, at=now
    )
    app.confirm_command(actor="ana", command_id=ticket.command_id, totp_step=1, at=now)
    return ticket.command_id


async def test_a_write_held_back_by_a_nats_outage_is_refused_when_nats_returns(
    simulator: ModbusSimulator, own_database: str, tmp_path: Path
) -> None:
    config: ModbusDevice = press_config(simulator.port)
    store_executor = StoreExecutor(max_workers=2)
    app = await store_executor.call(open_application, own_database, device_catalog(config))
    port, store_dir = free_port(), tmp_path / "jetstream"
    servers = contextlib.ExitStack()
    servers.enter_context(nats_server(port, store_dir))
    nc: NatsClient = await nats.connect(
        f"nats://127.0.0.1:{port}", max_reconnect_attempts=-1, reconnect_time_wait=0.2
    )
    supervisor = DeviceSupervisor(config, ModbusDriver(config), RecordingSink(), policy=FAST)
    running = asyncio.create_task(supervisor.run())
    try:
        await serve_writes(nc, supervisor)
        spy = WriteSpy()
        await nc.subscribe(WRITE_SUBJECT.format(device=config.id), cb=spy.on_request)
        await nc.subscribe("_INBOX.>", cb=spy.on_reply)
        await nc.flush()
        dispatcher = CommandDispatcher(
            app, store_executor, nc, MemoryPosition(), write_timeout=WRITE_TIMEOUT,
            read_timeout=0.5, clock_skew=timedelta(milliseconds=500),
        )  # fmt: skip

        async def connected() -> None:
            assert supervisor.state is ConnectionState.CONNECTED

        await eventually(connected)
        command_id = await store_executor.call(register_and_confirm, app, config.id)

        servers.close()  # NATS goes away, for longer than the dispatcher waits

        async def reconnecting() -> None:
            assert nc.is_reconnecting

        await eventually(reconnecting)
        await dispatcher.settle(command_id)
        command = await store_executor.call(app.get_command, command_id)
        assert command.status is CommandStatus.WRITE_FAILED, command.reason

        servers.enter_context(nats_server(port, store_dir))  # NATS is back

        async def answered() -> WriteReply:
            return spy.reply_to("write")

        late = await eventually(answered)
        assert (late.ok, late.kind) == (False, WriteErrorKind.EXPIRED), late
        assert "deadline" in late.error
        assert supervisor.counters.writes == 0
        assert supervisor.counters.writes_refused_late == 1
        # The press still runs at the speed it had: the write never reached it.
        assert simulator.model.outputs()["speed_setpoint"] == STEADY_RPM
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await nc.close()
        servers.close()
        await store_executor.call(app.close)
        store_executor.shutdown()
