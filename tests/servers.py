"""Real servers for the tests: a Tansu broker, Redis, Triton, on loopback ports."""

import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cxrwatch.embedded.stack import tansu_binary

REPO = Path(__file__).resolve().parents[1]


# Ports for the test servers come from below the kernel's ephemeral range, so
# that no outgoing connection (a client's, a previous case's) can take one
# between the choice and the server's bind; and a port is handed out once per
# test process, so two servers started later never get the same one.
_LOWEST = 20000
_given: set[int] = set()


def _ephemeral_low() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_run(count: int) -> int:
    """The first of ``count`` consecutive ports nobody uses, not handed out before."""
    high = _ephemeral_low() - count
    for _ in range(1000):
        base = random.randint(_LOWEST, high)
        ports = set(range(base, base + count))
        if not ports & _given and all(_bindable(port) for port in ports):
            _given.update(ports)
            return base
    raise RuntimeError(f"no {count} consecutive free ports below {high + count}")


def free_port() -> int:
    """A TCP port nobody listens on, not handed out before in this process."""
    return free_run(1)


def process_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first,
    then parent, process group...), or None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting to be reaped."""
    fields = process_stat(pid)
    return fields is not None and fields[0] != "Z"


def wait_port(port: int, timeout_s: float = 30.0) -> None:
    """Wait until something accepts connections on ``port``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {timeout_s} s")


@contextmanager
def process(
    argv: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` in its own process group; kill the group on exit."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as handle:
        child = subprocess.Popen(
            argv,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env or dict(os.environ),
            start_new_session=True,
        )
    try:
        yield child
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()


@contextmanager
def tansu(log_dir: Path) -> Iterator[str]:
    """A Tansu broker with memory storage; yields its bootstrap address."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    argv = [
        str(tansu_binary()),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
    ]
    with process(argv, log_dir / f"tansu-{port}.log"):
        wait_port(port)
        yield f"127.0.0.1:{port}"
