"""The press as an MQTT sensor, for the demo and the integration tests.

It behaves like a typical networked sensor: on connecting it publishes
``online`` (retained) on ``<prefix>/press/status`` and leaves ``offline``
(retained) as its last will, so the broker reports it gone if it vanishes; then
it publishes the :class:`~simulators.model.PressModel` state as one JSON
document on ``<prefix>/press/state`` every tick::

    {"running": true, "motor": {"speed": 1190.2, "temperature": 45.1},
     "speed_setpoint": 1200, "produced_count": 42}

Commands arrive on ``<prefix>/press/cmd/<tag>`` as ``{"value": v}``; a value
that does not fit the tag (wrong type, outside its limits) is ignored with a
warning, as a device without a way to answer would; an accepted one is applied
and the new state published at once. :func:`press_tags` declares the tags a
plant file gives this sensor.

The prefix isolates simulators from each other on a shared broker. Tests also
use :meth:`MqttSensorSimulator.pause`, :meth:`~MqttSensorSimulator.publish_raw`
and :meth:`~MqttSensorSimulator.drop_connection` to make the sensor go quiet,
send garbage or vanish.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from contextlib import AsyncExitStack

import aiomqtt

from plantfile.protocols.mqtt import MqttTag, extract, fit, parse_payload
from plantfile.tags import RawValue, TagValue
from simulators.lifecycle import Simulator
from simulators.model import INPUTS, PressModel

log = logging.getLogger(__name__)

DEMO_PREFIX = "plantcore/demo"
RETRY_SECONDS = 2.0


def press_tags(prefix: str) -> tuple[MqttTag, ...]:
    """The sensor's tags: where each value sits in its state document, where commands go."""
    state = f"{prefix}/press/state"
    command = f"{prefix}/press/cmd"
    return (
        MqttTag(
            name="running",
            type="bool",
            topic=state,
            path="running",
            writable=True,
            command_topic=f"{command}/running",
            description="Motor run command and state",
        ),
        MqttTag(
            name="speed_setpoint",
            type="uint16",
            unit="rpm",
            topic=state,
            path="speed_setpoint",
            writable=True,
            low=0,
            high=3000,
            command_topic=f"{command}/speed_setpoint",
            description="Motor speed setpoint",
        ),
        MqttTag(
            name="speed",
            type="float32",
            unit="rpm",
            topic=state,
            path="motor.speed",
            description="Actual motor speed",
        ),
        MqttTag(
            name="motor_temperature",
            type="float32",
            unit="°C",
            topic=state,
            path="motor.temperature",
            description="Motor winding temperature",
        ),
        MqttTag(
            name="produced_count",
            type="uint32",
            unit="parts",
            topic=state,
            path="produced_count",
            description="Parts produced since the counter was reset",
        ),
    )


class MqttSensorSimulator(Simulator):
    """``async with MqttSensorSimulator(prefix=...) as sim``; ``sim.model`` is the live press.

    It can be stopped and started again (the model keeps its state), which is how
    tests make the device go offline and come back.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        prefix: str = DEMO_PREFIX,
        model: PressModel | None = None,
        tick_seconds: float = 0.1,
    ) -> None:
        self.host = host
        self.port = port
        self.state_topic = f"{prefix}/press/state"
        self.status_topic = f"{prefix}/press/status"
        self._command_prefix = f"{prefix}/press/cmd/"
        self._inputs = {tag.name: tag for tag in press_tags(prefix) if tag.name in INPUTS}
        if model is None:
            model = PressModel(running=True, speed_setpoint=1200.0)
        self.model = model
        self._tick_seconds = tick_seconds
        self._paused = False
        self._dropping = False  # the connection is being cut on purpose
        self.last_state: dict[str, object] | None = None  # the last document sent
        self._client: aiomqtt.Client | None = None
        self._stack: AsyncExitStack | None = None
        self._listener: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._client is not None

    def command_topic(self, tag: str) -> str:
        return f"{self._command_prefix}{tag}"

    def state(self) -> dict[str, object]:
        """The state document of the model as it is now."""
        out = self.model.outputs()
        return {
            "running": out["running"],
            "motor": {
                "speed": _rounded(out["speed"], 1),
                "temperature": _rounded(out["motor_temperature"], 2),
            },
            "speed_setpoint": _rounded(out["speed_setpoint"], 1),
            "produced_count": out["produced_count"],
        }

    async def start(self) -> None:
        """Connect, announce ``online``, listen for commands and publish every tick."""
        if self._client is not None:
            return
        will = aiomqtt.Will(self.status_topic, b"offline", qos=1, retain=True)
        client = aiomqtt.Client(self.host, self.port, will=will, timeout=5.0)
        stack = AsyncExitStack()
        try:
            await stack.enter_async_context(client)
            await client.subscribe(f"{self._command_prefix}+", qos=1)
            await client.publish(self.status_topic, b"online", qos=1, retain=True)
        except BaseException:
            await _quietly_close(stack)
            raise
        self._client, self._stack = client, stack
        await self._publish_state()
        self._listener = asyncio.create_task(self._listen(client), name="mqtt-sim-commands")
        self._start_ticking(
            self.model, self._tick_seconds, self._publish_state, name="mqtt-sim-ticker"
        )
        log.info(
            "mqtt simulator publishing on %s via %s:%d", self.state_topic, self.host, self.port
        )

    async def stop(self) -> None:
        """Announce ``offline`` and disconnect cleanly; safe when already stopped."""
        client = self._client
        if client is None:
            return
        await self._stop_tasks()
        with contextlib.suppress(aiomqtt.MqttError):  # already gone: the broker sent the will
            await client.publish(self.status_topic, b"offline", qos=1, retain=True)
        await self._disconnect()

    async def drop_connection(self) -> None:
        """Cut the connection without a DISCONNECT, as a sensor losing power would.

        The broker then publishes the last will (``offline``). The simulator is
        stopped afterwards and can be started again.
        """
        client = self._client
        if client is None:
            return
        if self._ticker is not None:
            self._ticker.cancel()
        self._dropping = True
        # paho's socket: aiomqtt has no way to end a connection without saying goodbye.
        sock = client._client.socket()
        if isinstance(sock, socket.socket):
            sock.shutdown(socket.SHUT_RDWR)
        if self._listener is not None:
            # Ends when the client sees its connection closed.
            await asyncio.wait({self._listener}, timeout=5.0)
        await self._stop_tasks()
        await self._disconnect()
        self._dropping = False

    async def wait_disconnected(self) -> None:
        """Return when the broker connection ends, for whatever reason."""
        if self._listener is not None:
            await asyncio.wait({self._listener})

    def pause(self) -> None:
        """Stop publishing state (commands are still applied): the sensor goes quiet."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    async def publish_raw(self, payload: bytes | str, *, retain: bool = False) -> None:
        """Publish any payload on the state topic, as a misbehaving sensor would."""
        await self._require_client().publish(self.state_topic, payload, qos=1, retain=retain)

    async def _publish_state(self) -> None:
        client = self._client
        if client is None or self._paused:
            return
        self.last_state = self.state()
        try:
            await client.publish(self.state_topic, json.dumps(self.last_state).encode(), qos=0)
        except aiomqtt.MqttError as exc:
            # The listener sees the connection end too; the next tick tries again.
            log.debug("mqtt simulator: state not published: %s", exc)

    async def _listen(self, client: aiomqtt.Client) -> None:
        try:
            async for message in client.messages:
                await self._apply(message.topic.value, bytes(message.payload))
        except aiomqtt.MqttError as exc:
            level = logging.INFO if self._dropping else logging.WARNING
            log.log(level, "mqtt simulator: broker connection lost: %s", exc.__cause__ or exc)

    async def _apply(self, topic: str, payload: bytes) -> None:
        name = topic.removeprefix(self._command_prefix)
        tag = self._inputs.get(name)
        try:
            if tag is None:
                raise ValueError("no such input")
            value = fit(extract(parse_payload(payload), "value"), tag.type)
            if not _within(tag, value):
                raise ValueError(f"{value} outside the limits [{tag.low}, {tag.high}]")
        except ValueError as exc:
            log.warning("mqtt simulator: command on %s ignored: %s", topic, exc)
            return
        self.model.set_input(name, value)
        await self._publish_state()

    async def _stop_tasks(self) -> None:
        tasks = {task for task in (self._ticker, self._listener) if task is not None}
        self._ticker = self._listener = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def _disconnect(self) -> None:
        stack = self._stack
        self._client = self._stack = None
        if stack is not None:
            await _quietly_close(stack)

    def _require_client(self) -> aiomqtt.Client:
        if self._client is None:
            raise RuntimeError("the simulator is not started")
        return self._client


async def serve(host: str = "127.0.0.1", port: int = 1883, prefix: str = DEMO_PREFIX) -> None:
    """Run the demo sensor until cancelled; like a real sensor, it reconnects after an outage."""
    sim = MqttSensorSimulator(host=host, port=port, prefix=prefix)
    try:
        while True:
            try:
                await sim.start()
            except aiomqtt.MqttError as exc:
                log.warning("mqtt simulator: cannot reach %s:%d: %s", host, port, exc)
            else:
                await sim.wait_disconnected()
                await sim.stop()
            await asyncio.sleep(RETRY_SECONDS)
    finally:
        await sim.stop()


def _within(tag: MqttTag, value: RawValue) -> bool:
    if isinstance(value, bool):
        return True
    return (tag.low is None or value >= tag.low) and (tag.high is None or value <= tag.high)


def _rounded(value: TagValue, digits: int) -> TagValue:
    """Round for a readable document; whole numbers stay integers (``1200``, not ``1200.0``)."""
    if isinstance(value, float):
        value = round(value, digits)
        return int(value) if value.is_integer() else value
    return value


async def _quietly_close(stack: AsyncExitStack) -> None:
    try:
        await stack.aclose()
    except aiomqtt.MqttError as exc:
        log.debug("mqtt simulator: disconnect failed: %s", exc)
