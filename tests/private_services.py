"""Servers of a test's own: PostgreSQL, Redis, NATS and Mosquitto on spare loopback ports.

A test that takes a service away (a fault drill, a store outage) must never
touch the machine's shared servers, which every other test is using. These run
from the machine's binaries on a port of their own, are started, stopped,
killed and restarted by the PID of the process the test started, and come back
on the same port with the same data directory::

    with private_postgres(tmp_path) as postgres:
        ...  # postgres.url answers
        postgres.kill()  # SIGKILL: the server is gone at once
        postgres.start()  # same port, same data, after crash recovery

Each process is started from the thread that calls ``start`` and is stopped by
the kernel should that thread end first (``PR_SET_PDEATHSIG``, see
``plantcore.embedded.spawn``), so that a killed test run leaves no server
behind: call it from the main thread or from an executor's, not from a
short-lived thread.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import functools
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg

from plantcore.embedded import executable, free_port, spawn, wait_until_ready

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
POSTGRES_USER = "postgres"

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
_POLL_SECONDS = 0.05


class PrivateService(abc.ABC):
    """One server process of a test's own, on ``port``, with its files under ``root``.

    Subclasses say how to run it (:meth:`_command`), as whom (``user``), how it
    stops cleanly (``stop_signal``) and when it is ready (:meth:`_ready`).
    """

    name = "service"
    user: str | None = None
    stop_signal = signal.SIGTERM

    def __init__(self, root: Path, port: int | None = None) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """Where a client reaches the server."""

    @property
    def log_file(self) -> Path:
        return self.root / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        """The server's PID while it runs, None once it has stopped or died."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    def start(self) -> None:
        """Start the server (same port, same data) and return once it answers."""
        if self.pid is not None:
            raise RuntimeError(f"private {self.name} is already running (PID {self.pid})")
        proc = spawn(self._command(), self.log_file, user=self.user)
        what = f"private {self.name} on port {self.port} (log {self.log_file})"
        try:
            wait_until_ready(proc, what, lambda: self._ready(proc.pid), START_TIMEOUT_SECONDS)
        except BaseException:
            _kill_with_children(proc)
            raise
        self._proc = proc

    def stop(self) -> None:
        """Stop the server cleanly by its PID; kill it if it has not gone within a bound."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(self.stop_signal)
        _signal_tree(proc.pid, signal.SIGCONT)  # a frozen server acts on it once it runs
        try:
            proc.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            _kill_with_children(proc)

    def kill(self) -> None:
        """SIGKILL the server and the processes it started, as a crash would; wait for them."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _kill_with_children(proc)

    def restart(self) -> None:
        self.stop()
        self.start()

    def freeze(self) -> None:
        """SIGSTOP the server and its children: it holds its connections and answers nothing.

        A server that hangs rather than goes. :meth:`thaw` resumes it; :meth:`stop`
        and :meth:`kill` work on a frozen server too.
        """
        _signal_tree(self._running_pid(), signal.SIGSTOP)

    def thaw(self) -> None:
        _signal_tree(self._running_pid(), signal.SIGCONT)

    def _running_pid(self) -> int:
        if self.pid is None:
            raise RuntimeError(f"private {self.name} is not running")
        return self.pid

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @abc.abstractmethod
    def _command(self) -> list[str]:
        """The server's command line."""

    def _ready(self, pid: int) -> bool:
        # Our process listening, not only something answering: another server
        # already on the port would answer while ours fails to start.
        return _listens(pid, self.port)


class PrivatePostgres(PrivateService):
    """A PostgreSQL 15 cluster of a test's own, copied from one made once per test run.

    PostgreSQL refuses to run as root, so the cluster runs as the ``postgres``
    account, and it lives in a directory of that account's outside ``root``:
    pytest's temporary directories are root's alone. Leaving the ``with`` block
    stops the server and removes the cluster; within it, stop, kill and start
    keep the data. The log is ``root / "postgres.log"``.
    """

    name = "postgres"
    user = POSTGRES_USER
    # SIGTERM is PostgreSQL's "smart" shutdown, which waits for every client to
    # leave: a pool left open would hold it up. SIGINT is the fast shutdown.
    stop_signal = signal.SIGINT

    def __init__(self, root: Path, port: int | None = None) -> None:
        super().__init__(root, port)
        self.data_dir = _clusters() / f"cluster-{self.port}"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        if not self.data_dir.exists():
            subprocess.run(["cp", "-a", str(_template_cluster()), str(self.data_dir)], check=True)
        super().start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _command(self) -> list[str]:
        return [str(POSTGRES_BIN / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]

    def _ready(self, pid: int) -> bool:
        # The port opens before recovery ends; ready is when a query is answered.
        if not super()._ready(pid):
            return False
        try:
            with psycopg.connect(self.url, connect_timeout=1) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True


class PrivateRedis(PrivateService):
    """A Redis of a test's own. It keeps nothing on disk, as the plant's: a restart empties it."""

    name = "redis"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _command(self) -> list[str]:
        store = self.root / "redis"
        store.mkdir(exist_ok=True)
        return [
            executable("redis-server"),
            *("--port", str(self.port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(store)),
        ]


class PrivateNats(PrivateService):
    """A NATS server with JetStream of a test's own, its store in ``root / "jetstream"``."""

    name = "nats"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        return [
            executable("nats-server"),
            *("-a", "127.0.0.1", "-p", str(self.port)),
            *("-js", "-sd", str(self.root / "jetstream")),
        ]


class PrivateMosquitto(PrivateService):
    """A Mosquitto broker of a test's own, anonymous, keeping nothing on disk."""

    name = "mosquitto"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        config = self.root / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n",
            encoding="utf-8",
        )
        return [executable("mosquitto"), "-c", str(config)]


def private_postgres(root: Path) -> PrivatePostgres:
    """PostgreSQL at ``postgresql://postgres@127.0.0.1:<port>/postgres``, trust on 127.0.0.1."""
    return PrivatePostgres(root)


def private_redis(root: Path) -> PrivateRedis:
    """Redis at ``redis://127.0.0.1:<port>/0``."""
    return PrivateRedis(root)


def private_nats(root: Path) -> PrivateNats:
    """NATS with JetStream at ``nats://127.0.0.1:<port>``."""
    return PrivateNats(root)


def private_mosquitto(root: Path) -> PrivateMosquitto:
    """A Mosquitto MQTT broker on 127.0.0.1:<port>."""
    return PrivateMosquitto(root)


# Made once per test run, whichever thread asks first (a drill runs on a thread of its own).
_MADE_ONCE = threading.RLock()


def _clusters() -> Path:
    """The directory of this test run's clusters, removed when the run ends."""
    with _MADE_ONCE:
        return _clusters_made()


@functools.cache
def _clusters_made() -> Path:
    path = Path(tempfile.mkdtemp(prefix="plantcore-private-postgres-"))
    path.chmod(0o711)  # the postgres account reaches its clusters, and reads nothing else
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _template_cluster() -> Path:
    """A cluster made by initdb once per test run; each private PostgreSQL is a copy of it."""
    with _MADE_ONCE:
        return _template_made()


@functools.cache
def _template_made() -> Path:
    template = _clusters() / "template"
    template.mkdir(mode=0o700)
    shutil.chown(template, POSTGRES_USER, POSTGRES_USER)
    subprocess.run(
        [
            *("runuser", "-u", POSTGRES_USER, "--"),
            *(str(POSTGRES_BIN / "initdb"), "-D", str(template)),
            *("--auth=trust", "--username=postgres", "--encoding=UTF8", "--locale=C.UTF-8"),
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    with (template / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write(
            "listen_addresses = '127.0.0.1'\n"
            # No Unix socket: the shared server's directory is not ours, and a socket
            # path under a test's directory can exceed the 107 characters allowed.
            "unix_socket_directories = ''\n"
            # What is tested is a server that goes away and comes back, not its disk.
            # Without fsync, a committed row still survives a killed server (it is in
            # the kernel's page cache); only a crash of the machine could lose it.
            "fsync = off\n"
        )
    return template


def _kill_with_children(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``proc`` and its children (PostgreSQL's backends) and wait until all are gone.

    The parent is frozen first, so that it starts no child between our look and
    the kill; its children would otherwise outlive it (a new PostgreSQL refuses
    to start while the old backends still hold the shared memory).
    """
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGSTOP)
    children = _children(proc.pid)
    for pid in [proc.pid, *children]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while any(_alive(pid) for pid in children):
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {children} outlived SIGKILL")
        time.sleep(_POLL_SECONDS)


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a socket listening on 127.0.0.1:``port``."""
    local = f"0100007F:{port:04X}"  # how /proc/net/tcp writes 127.0.0.1:port
    try:
        table = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
        held = {os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}
    except OSError:  # it has exited, or closed a descriptor while we looked
        return False
    listening = {
        fields[9] for fields in map(str.split, table) if fields[1] == local and fields[3] == "0A"
    }
    return any(f"socket:[{inode}]" in held for inode in listening)


def _signal_tree(pid: int, signum: signal.Signals) -> None:
    for target in [pid, *_children(pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signum)


def _children(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _stat_fields(stat)
        if fields is not None and int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    fields = _stat_fields(Path(f"/proc/{pid}/stat"))
    return fields is not None and fields[0] != "Z"  # a zombie holds nothing any more


def _stat_fields(stat: Path) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command (state, parent, ...), if it exists."""
    try:
        text = stat.read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # the command, in parentheses, may hold spaces
