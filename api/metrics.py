"""``/metrics`` in the Prometheus text format (prometheus-client).

The names seed 000 gives the core engine (``core_engine_*``) plus per-device
figures (``plantcore_device_*``), the supervisors' buffer (``plantcore_buffer_*``)
and the dead-lettered messages; ``docs/metrics.md`` lists each with its meaning.

Every figure is read when Prometheus scrapes, from the objects that own it
(:class:`DeviceFigures` from the fleet, :class:`CommandFigures` from the event
log follower, :class:`DeadLetterFigures` from the consumers' dead letters,
:class:`BufferFigures` from the outbox), so nothing on the hot paths knows
about Prometheus. Counters
start at zero with the process, which Prometheus's ``rate()`` expects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector


@dataclass(frozen=True, slots=True)
class DeviceFigures:
    device: str
    connected: bool
    reconnects: int
    samples_published: int
    cycles: int
    cycle_seconds_total: float
    restarts: int


class CommandFigures(Protocol):
    requested: int
    dropped: dict[str, int]

    def requests_per_second(self) -> float: ...

    def mean_latency_seconds(self) -> float: ...


class DeadLetterFigures(Protocol):
    def counts(self) -> Mapping[tuple[str, str], int]:
        """Messages dead-lettered, by (consumer, kind of reason)."""
        ...


class BufferFigures(Protocol):
    """The supervisors' store-and-forward buffer (:class:`devices.outbox.OutboxFigures`)."""

    @property
    def entries(self) -> Mapping[str, int]:
        """Entries waiting, by kind (telemetry, status, alarm)."""
        ...

    @property
    def bytes(self) -> int: ...

    @property
    def max_bytes(self) -> int: ...

    @property
    def oldest_age_seconds(self) -> float: ...

    @property
    def forwarded(self) -> int: ...

    @property
    def dropped(self) -> Mapping[tuple[str, str], int]:
        """Entries given up, by (kind, reason)."""
        ...


class PlantCollector(Collector):
    def __init__(
        self,
        devices: Callable[[], Iterable[DeviceFigures]],
        commands: CommandFigures,
        dead_letters: DeadLetterFigures,
        *,
        refused_logins: Callable[[], Mapping[str, int]] = dict,
        buffer: Callable[[], BufferFigures] | None = None,
    ) -> None:
        self._devices = devices
        self._commands = commands
        self._dead_letters = dead_letters
        # Logins refused before any password was checked, by reason (rate_limited, busy).
        self._refused_logins = refused_logins
        self._buffer = buffer

    def collect(self) -> Iterator[Metric]:
        yield from self._command_metrics()
        yield from self._device_metrics(list(self._devices()))
        yield self._dead_letter_metric()
        yield self._refused_login_metric()
        if self._buffer is not None:
            yield from self._buffer_metrics(self._buffer())

    def _buffer_metrics(self, buffer: BufferFigures) -> Iterator[Metric]:
        entries = GaugeMetricFamily(
            "plantcore_buffer_entries",
            "Messages of the supervisors waiting in the buffer for NATS, by kind",
            labels=["kind"],
        )
        for kind, count in sorted(buffer.entries.items()):
            entries.add_metric([kind], count)
        yield entries
        yield GaugeMetricFamily(
            "plantcore_buffer_bytes", "Bytes of the entries in the buffer", value=buffer.bytes
        )
        yield GaugeMetricFamily(
            "plantcore_buffer_max_bytes",
            "The buffer's limit, beyond which the oldest telemetry is dropped",
            value=buffer.max_bytes,
        )
        yield GaugeMetricFamily(
            "plantcore_buffer_oldest_age_seconds",
            "Age of the oldest entry in the buffer (0 when empty)",
            value=buffer.oldest_age_seconds,
        )
        yield CounterMetricFamily(
            "plantcore_buffer_forwarded",
            "Entries of the buffer JetStream stored",
            value=buffer.forwarded,
        )
        dropped = CounterMetricFamily(
            "plantcore_buffer_dropped",
            "Entries given up without being stored, by kind and reason",
            labels=["kind", "reason"],
        )
        for (kind, reason), count in sorted(buffer.dropped.items()):
            dropped.add_metric([kind, reason], count)
        yield dropped

    def _dead_letter_metric(self) -> Metric:
        dead_lettered = CounterMetricFamily(
            "plantcore_dead_lettered_messages",
            "Messages a consumer could not store, moved to the DEADLETTER stream",
            labels=["consumer", "kind"],
        )
        for (consumer, kind), count in sorted(self._dead_letters.counts().items()):
            dead_lettered.add_metric([consumer, kind], count)
        return dead_lettered

    def _refused_login_metric(self) -> Metric:
        refused = CounterMetricFamily(
            "plantcore_logins_refused",
            "Logins refused before any password was checked: too many from one address, or busy",
            labels=["reason"],
        )
        for reason, count in sorted(self._refused_logins().items()):
            refused.add_metric([reason], count)
        return refused

    def _command_metrics(self) -> Iterator[Metric]:
        commands = self._commands
        yield GaugeMetricFamily(
            "core_engine_commands_per_second",
            "Commands requested per second, over the last minute",
            value=commands.requests_per_second(),
        )
        yield GaugeMetricFamily(
            "core_engine_latency_ms",
            "Mean time from a command's release (confirmation or approval) to its write's outcome",
            value=commands.mean_latency_seconds() * 1000.0,
        )
        dropped = CounterMetricFamily(
            "core_engine_dropped_commands",
            "Commands that failed to write (write_failed) or expired unanswered (expired)",
            labels=["reason"],
        )
        for reason, count in sorted(commands.dropped.items()):
            dropped.add_metric([reason], count)
        yield dropped
        yield CounterMetricFamily(
            "plantcore_commands_requested", "Commands requested", value=commands.requested
        )

    def _device_metrics(self, devices: list[DeviceFigures]) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "core_engine_plc_connections_active",
            "Devices whose supervisor is connected",
            value=sum(figures.connected for figures in devices),
        )
        reconnects = CounterMetricFamily(
            "core_engine_reconnects", "Reconnections of a device", labels=["device"]
        )
        connected = GaugeMetricFamily(
            "plantcore_device_connected", "1 while the device is connected", labels=["device"]
        )
        cycles = SummaryMetricFamily(
            "plantcore_device_poll_cycle_seconds",
            "Time to read a device's tags and publish the batch",
            labels=["device"],
        )
        samples = CounterMetricFamily(
            "plantcore_device_samples_published", "Samples published", labels=["device"]
        )
        restarts = CounterMetricFamily(
            "plantcore_device_supervisor_restarts",
            "Crashed supervisors the fleet restarted",
            labels=["device"],
        )
        for figures in devices:
            label = [figures.device]
            reconnects.add_metric(label, figures.reconnects)
            connected.add_metric(label, 1.0 if figures.connected else 0.0)
            cycles.add_metric(label, figures.cycles, figures.cycle_seconds_total)
            samples.add_metric(label, figures.samples_published)
            restarts.add_metric(label, figures.restarts)
        yield from (reconnects, connected, cycles, samples, restarts)


def plant_registry(collector: PlantCollector) -> CollectorRegistry:
    """A registry of the plant's own figures (not the process-global default one)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    return registry
