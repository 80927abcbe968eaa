"""MQTT driver on aiomqtt: a cache of the latest state, filled by a background consumer.

MQTT devices push; the supervisor polls. :meth:`MqttDriver.connect` subscribes
to every tag's state topic (once per topic) and the device's status topic, and
starts a task that parses each message into the latest raw value of the tags
it feeds, with its arrival time. :meth:`MqttDriver.read` answers from that
cache, never from the network:

- nothing received yet on the tag's topic: bad;
- the last message was not JSON, lacked the tag's path, or held a value its
  data type cannot hold (a string for a float32, a float for a bool, 70000 for
  an int16): bad, and one warning names the device, topic and reason, once per
  topic until a good message arrives again (a device publishing garbage ten
  times a second must not flood the log);
- the last message is older than ``staleness_seconds``: uncertain, with the last value;
- a retained message (delivered on subscribing, so of unknown age): uncertain,
  unless the status topic says the device is online, which makes its retained
  state its current state;
- the status topic (or the device's last will) says offline: every tag bad; values
  from before an offline are forgotten, so nothing old turns good again when
  the device comes back.

An unknown status (no status topic, or nothing published on it yet) counts as online.

A lost broker connection ends the consumer; the next ``read`` or ``write`` raises
:class:`DeviceConnectionError` and the supervisor reconnects (aiomqtt never
reconnects on its own, and paho's reconnect is off). A device that goes quiet
without an offline status makes its tags uncertain, and after the plant's
``max_consecutive_fails`` polls without a good value the supervisor treats it
as a lost connection, as for any protocol.

**Writes and read-back.** :meth:`MqttDriver.write` publishes the command with
QoS 1, never retained (a retained command would be applied again at every
restart of the device), and waits for the broker's PUBACK: the broker has the
command, the device may not have acted on it yet. While the device reports
offline, writes are refused. The supervisor reads back right after a write,
and the read-back reports the last state received, which may predate the
command. So ``write`` then waits, at most ``read_back_seconds``, for a state
message showing the written value; if none comes (the device refused or clamped
the value, or publishes its state rarely) it returns anyway and the read-back
reports the device's actual state, which is the truth the caller needs.

A command is refused (:class:`DeviceRequestError`) only when it never left:
the tag has no command topic, the device reports offline, or paho would not
queue it (:data:`NOT_SENT`). No PUBACK within ``timeout_seconds`` on a
connection that stays up raises :class:`WriteOutcomeUnknown`: the broker may
have the command and pass it on, and the device act on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass

import aiomqtt
from paho.mqtt.enums import MQTTErrorCode

from devices.device_errors import DeviceConnectionError, DeviceRequestError, WriteOutcomeUnknown
from devices.driver import BAD_READING, Reading, TagIndex
from domain.messages import Quality
from plantfile.protocols.mqtt import (
    MqttDevice,
    MqttTag,
    command_payload,
    extract,
    fit,
    parse_payload,
    same_value,
)
from plantfile.tags import RawValue, TagConfig
from support.secret_source import SecretSourceError, device_secret

log = logging.getLogger(__name__)

_CONNECTION_GONE = frozenset({MQTTErrorCode.MQTT_ERR_NO_CONN, MQTTErrorCode.MQTT_ERR_CONN_LOST})
# paho's refusals to take a message on: it was never sent.
NOT_SENT = frozenset({MQTTErrorCode.MQTT_ERR_QUEUE_SIZE})


@dataclass(frozen=True, slots=True)
class Latest:
    """What the last message on a tag's topic said about the tag."""

    value: RawValue | None  # None: the message could not give the tag a value
    arrived: float  # time.monotonic() at arrival
    retained: bool


class MqttDriver:
    def __init__(self, device: MqttDevice) -> None:
        self._device = device.id
        self._connection = device.mqtt
        self._client_id = device.mqtt.client_id or f"plantcore-{device.id}"
        self._tags = TagIndex(device.id, device.tags)
        self._by_topic: dict[str, list[MqttTag]] = {}
        for tag in device.tags:
            self._by_topic.setdefault(tag.topic, []).append(tag)
        self._client: aiomqtt.Client | None = None
        self._stack: AsyncExitStack | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._lost = "not connected"
        self._latest: dict[str, Latest] = {}
        self._online: bool | None = None  # None: the device has not said
        self._problems: dict[str, str] = {}  # topic -> the reason last logged
        self._arrival = asyncio.Event()  # replaced after each message; see _notify

    @property
    def connected(self) -> bool:
        return self._consumer is not None and not self._consumer.done()

    async def connect(self) -> None:
        await self.close()
        conn = self._connection
        where = f"{conn.host}:{conn.port}"
        stack = AsyncExitStack()
        try:
            client = aiomqtt.Client(
                conn.host,
                conn.port,
                username=conn.username,
                password=self._password(),
                identifier=self._client_id,
                keepalive=conn.keepalive_seconds,
                timeout=conn.timeout_seconds,
                clean_session=True,
                tls_context=await self._tls_context(),
            )
            await stack.enter_async_context(client)
            # The status first: the broker sends retained messages in subscription order,
            # so a retained "offline" is known before the retained state it invalidates.
            topics = [conn.status_topic] if conn.status_topic else []
            topics += list(self._by_topic)
            qos: int = conn.qos
            granted = await client.subscribe([(topic, qos) for topic in topics])
        except (aiomqtt.MqttError, OSError) as exc:
            await _quietly_close(stack)
            raise DeviceConnectionError(self._device, f"cannot connect to {where}: {exc}") from exc
        except BaseException:
            await _quietly_close(stack)
            raise
        refused = [topic for topic, code in zip(topics, granted, strict=False) if _refused(code)]
        if refused:
            log.warning(
                "device %s: broker %s refused the subscription to %s: their tags stay bad",
                self._device, where, ", ".join(refused),
            )  # fmt: skip
        self._latest.clear()
        self._problems.clear()
        self._online = None
        self._client, self._stack = client, stack
        self._lost = "connection to the broker lost"
        self._consumer = asyncio.create_task(self._consume(client), name=f"mqtt-{self._device}")

    async def close(self) -> None:
        consumer, stack = self._consumer, self._stack
        self._client = self._stack = self._consumer = None
        self._lost = "not connected"
        if consumer is not None:
            consumer.cancel()
            await asyncio.wait({consumer})
        if stack is not None:
            await _quietly_close(stack)
        self._notify()

    async def read(self, tags: Sequence[TagConfig]) -> dict[str, Reading]:
        self._require_client()
        now = time.monotonic()
        return {tag.name: self._reading(tag, now) for tag in self._tags.resolve(tags)}

    async def write(self, neutral: TagConfig, value: RawValue) -> None:
        tag = self._tags[neutral]
        client = self._require_client()
        what = f"write {tag.name}"
        if tag.command_topic is None:
            raise DeviceRequestError(self._device, f"{what}: the tag has no command_topic")
        if self._online is False:
            # Nobody would act on it now, and a broker keeping a persistent session for the device
            # would deliver it at its return, long after the operator gave up.
            raise DeviceRequestError(self._device, f"{what}: the device reports offline")
        try:
            await client.publish(tag.command_topic, command_payload(tag, value), qos=1)
        except aiomqtt.MqttError as exc:
            code = exc.rc if isinstance(exc, aiomqtt.MqttCodeError) else None
            if code in _CONNECTION_GONE or not self.connected:
                raise DeviceConnectionError(self._device, f"{what}: {exc}") from exc
            if code in NOT_SENT:
                raise DeviceRequestError(self._device, f"{what}: not sent: {exc}") from exc
            # Sent, and no PUBACK in time (or a failure paho does not explain): the broker
            # may have it and pass it on.
            reason = "no PUBACK" if code is None else "not confirmed"
            raise WriteOutcomeUnknown(self._device, f"{what}: {reason}: {exc}") from exc
        await self._await_state(tag, value)

    # -- the cache -----------------------------------------------------------------------

    def _reading(self, tag: MqttTag, now: float) -> Reading:
        latest = self._latest.get(tag.name)
        if self._online is False or latest is None or latest.value is None:
            return BAD_READING
        staleness = self._connection.staleness_seconds
        stale = staleness is not None and now - latest.arrived > staleness
        unverified = latest.retained and self._online is not True
        return Reading(latest.value, Quality.UNCERTAIN if stale or unverified else Quality.GOOD)

    async def _consume(self, client: aiomqtt.Client) -> None:
        try:
            async for message in client.messages:
                try:
                    self._receive(message.topic.value, bytes(message.payload), message.retain)
                except Exception:
                    # A bug in handling one message must not stop every later one.
                    log.exception(
                        "device %s: message on %s not handled", self._device, message.topic
                    )
        except aiomqtt.MqttError as exc:
            self._lost = f"connection to the broker lost: {exc.__cause__ or exc}"
        finally:
            self._notify()

    def _receive(self, topic: str, payload: bytes, retained: bool) -> None:
        if topic == self._connection.status_topic:
            self._receive_status(topic, payload)
        elif topic in self._by_topic:
            self._receive_state(topic, payload, retained)
        self._notify()

    def _receive_status(self, topic: str, payload: bytes) -> None:
        conn = self._connection
        text = payload.decode("utf-8", errors="replace").strip()
        if text not in (conn.online_payload, conn.offline_payload):
            expected = f"{conn.online_payload!r} nor {conn.offline_payload!r}"
            kept = self._online_text()
            self._problem(topic, f"status {text[:40]!r} is neither {expected}, kept {kept}")
            return
        self._problem(topic, None)
        online = text == conn.online_payload
        if online is not self._online:
            log.info("device %s: reports %s on %s", self._device, text, topic)
        # Values from before an offline, or received while offline, describe no current state.
        if not online or self._online is False:
            self._latest.clear()
        self._online = online

    def _receive_state(self, topic: str, payload: bytes, retained: bool) -> None:
        tags = self._by_topic[topic]
        arrived = time.monotonic()
        try:
            document = parse_payload(payload)
        except ValueError as exc:
            for tag in tags:
                self._latest[tag.name] = Latest(None, arrived, retained)
            self._problem(topic, f"not JSON ({exc}): tags {', '.join(t.name for t in tags)} bad")
            return
        reasons: list[str] = []
        for tag in tags:
            value: RawValue | None = None
            try:
                value = fit(extract(document, tag.path), tag.type)
            except ValueError as exc:
                reasons.append(f"tag {tag.name} bad: {exc}")
            self._latest[tag.name] = Latest(value, arrived, retained)
        self._problem(topic, "; ".join(reasons) or None)

    def _problem(self, topic: str, reason: str | None) -> None:
        """Log a topic's problem once, until the topic is good again."""
        if reason is None:
            if self._problems.pop(topic, None) is not None:
                log.info("device %s: topic %s good again", self._device, topic)
        elif self._problems.get(topic) != reason:
            self._problems[topic] = reason
            log.warning("device %s: topic %s: %s", self._device, topic, reason)

    def _online_text(self) -> str:
        return {None: "unknown", True: "online", False: "offline"}[self._online]

    def _notify(self) -> None:
        """Wake whoever waits for the next message (or for the end of the connection)."""
        self._arrival.set()
        self._arrival = asyncio.Event()

    async def _await_state(self, tag: MqttTag, raw: RawValue) -> None:
        """Wait, within ``read_back_seconds``, for a state message showing ``raw``."""
        deadline = time.monotonic() + self._connection.read_back_seconds
        while self.connected and not self._shows(tag, raw):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.info(
                    "device %s: no state showing %s = %r within %g s of the command",
                    self._device, tag.name, raw, self._connection.read_back_seconds,
                )  # fmt: skip
                return
            arrival = self._arrival
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await arrival.wait()

    def _shows(self, tag: MqttTag, raw: RawValue) -> bool:
        latest = self._latest.get(tag.name)
        if self._online is False or latest is None or latest.value is None:
            return False
        return same_value(tag.type, latest.value, raw)

    # -- connecting ----------------------------------------------------------------------

    def _require_client(self) -> aiomqtt.Client:
        if self._client is None or not self.connected:
            raise DeviceConnectionError(self._device, self._lost)
        return self._client

    def _password(self) -> str | None:
        name = self._connection.password_env
        if name is None:
            return None
        try:
            password = device_secret(name)
        except SecretSourceError as exc:
            raise DeviceConnectionError(self._device, f"the broker password: {exc}") from exc
        if password is None:
            raise DeviceConnectionError(
                self._device, f"the broker password's environment variable {name} is not set"
            )
        return password

    async def _tls_context(self) -> ssl.SSLContext | None:
        if not self._connection.tls:
            return None
        # Reads the CA bundle from disk: off the event loop.
        return await asyncio.to_thread(ssl.create_default_context, cafile=self._connection.ca_file)


def _refused(code: object) -> bool:
    """A SUBACK failure: 0x80 on MQTT 3.1.1, any reason code from 0x80 on MQTT 5."""
    value = getattr(code, "value", code)
    return isinstance(value, int) and value >= 0x80


async def _quietly_close(stack: AsyncExitStack) -> None:
    """Disconnect; a connection that is already broken cannot be closed more politely."""
    try:
        await stack.aclose()
    except aiomqtt.MqttError as exc:
        log.debug("disconnect failed: %s", exc)
