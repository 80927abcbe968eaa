"""The processes a drill runs besides the services: simulated presses and the plant core.

Both are :class:`~tests.private_services.PrivateService` processes: started,
stopped, killed (SIGKILL) and started again by the PID the drill holds, on the
same port, with their output in a log file under the drill's directory.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.private_services import PrivateService


class SimulatedPress(PrivateService):
    """``python -m simulators modbus`` on a port of its own, as one device of the plant.

    Killed, it is a device unplugged; started again, the same press on the same
    port (its model and its read sequence start afresh, as after a power cycle).
    """

    def __init__(
        self,
        root: Path,
        device: str,
        *,
        write_log: Path | None = None,
        write_reply_delay_ms: int = 0,
    ) -> None:
        super().__init__(root)
        self.name = device
        self.write_log = write_log
        self._reply_delay_ms = write_reply_delay_ms

    @property
    def url(self) -> str:
        return f"modbus-tcp://127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        command = [sys.executable, "-m", "simulators", "modbus", "--port", str(self.port)]
        if self.write_log is not None:
            command += ["--write-log", str(self.write_log)]
        if self._reply_delay_ms:
            command += ["--write-reply-delay-ms", str(self._reply_delay_ms)]
        return command


class PlantcoreProcess(PrivateService):
    """``python -m plantcore run`` with ``settings`` as its ``PLANTCORE_*`` environment.

    Ready once its API listens, the last part it starts. The settings reach it
    through ``env``, which replaces itself with the plant core (one PID), so the
    drill's own environment stays as it is; every ``PLANTCORE_*`` variable the
    drill was started with is removed first, so only ``settings`` count.
    Secrets are given as files (``PLANTCORE_*_FILE``), never on a command line.
    """

    name = "plantcore"

    def __init__(self, root: Path, settings: Mapping[str, str]) -> None:
        super().__init__(root)
        self.settings = {"PLANTCORE_HTTP_PORT": str(self.port), **settings}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        inherited = [name for name in os.environ if name.startswith("PLANTCORE_")]
        unset = [argument for name in inherited for argument in ("-u", name)]
        assignments = [f"{name}={value}" for name, value in self.settings.items()]
        return ["env", *unset, *assignments, sys.executable, "-m", "plantcore", "run"]
