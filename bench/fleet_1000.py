"""fleet_1000: issue 16's P4, 1,000 Modbus devices of 20 tags polled at 1 Hz by one process.

fleet_poll's measurement (:func:`bench.fleet_poll.measure`) at five times its
size: 50 simulated Modbus TCP servers of 20 unit ids each, in a process of their
own, and in this process a :class:`~devices.fleet.Fleet` of 1,000 supervisors,
one connection each, publishing through the buffer on disk and its forwarder
into the TELEMETRY stream of a NATS server of the run's own (a run on the
machine's NATS spent longer purging its 2,000 subjects than measuring). The
targets: under one core, under 300 MB resident, no missed ticks.

Then one of the devices polled as fast as it goes, four ways, alternated: a bare
pymodbus loop (``raw``), the same loop also publishing the batch to JetStream and
awaiting each ack (``raw_nats``), the supervisor counting its batches
(``plantcore``) and the supervisor publishing through the buffer
(``plantcore_nats``). ``ratio_nats`` is the last over ``raw_nats`` (target 0.9),
``ratio_nats_vs_pymodbus`` the last over ``raw``.
"""

from __future__ import annotations

from bench.common import BenchConfig, Figures
from bench.fleet_poll import measure

DEVICES = 1000


async def run(config: BenchConfig) -> Figures:
    return await measure(config, DEVICES, own_nats=True)
