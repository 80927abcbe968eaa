"""Follows the plant file while the plant runs, and applies each saved change.

Every ``interval`` seconds the file's bytes are compared with the last ones
applied; on a change it is read again (:func:`~plantfile.loader.read_plant_file`)
and handed to the runtime, which moves the fleet to it without a restart.
What a plant engineer expects while editing a live file:

- a file that does not parse, or whose plant-wide keys are wrong, is logged and
  changes nothing: the running plant keeps its last good configuration;
- a device block that is wrong is logged; if that device is running, it keeps
  running as it was, otherwise it is not started;
- the command catalogue follows the fleet, so a removed device refuses new
  commands and an added one accepts them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from plantfile.loader import PlantConfigError, PlantFile, read_plant_file
from plantfile.plant import PlantConfig

log = logging.getLogger(__name__)

# Runs the plant from now on; told the problems of the file it came from.
ApplyPlant = Callable[[PlantConfig, Sequence[PlantConfigError]], Awaitable[None]]


def fingerprint(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None  # being replaced by an editor: look again next time


async def watch_plant_file(
    path: Path,
    running: Callable[[], PlantConfig],
    apply: ApplyPlant,
    *,
    interval: float = 2.0,
) -> None:
    """Hand every change of ``path`` to ``apply``; ``running`` is the plant run now."""
    applied = fingerprint(path)
    while True:
        await asyncio.sleep(interval)
        current = fingerprint(path)
        if current is None or current == applied:
            continue
        applied = current
        try:
            loaded = read_plant_file(path)
        except PlantConfigError as exc:
            log.error("%s; the plant keeps running as it was", exc)
            continue
        await apply(keep_running_versions(loaded, running()), loaded.problems)


def keep_running_versions(loaded: PlantFile, running: PlantConfig) -> PlantConfig:
    """``loaded``, where each rejected block of a running device keeps its running version."""
    kept = [
        device
        for device in running.devices
        if device.id in loaded.rejected_ids
        and all(other.id != device.id for other in loaded.plant.devices)
    ]
    for problem in loaded.problems:
        log.error("%s; that device block is not applied", problem)
    if not kept:
        return loaded.plant
    return loaded.plant.model_copy(update={"devices": [*loaded.plant.devices, *kept]})
