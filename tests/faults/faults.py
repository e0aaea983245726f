"""The faults the suite injects, each one blocking call that breaks and heals.

* :class:`Kill`: SIGKILL a child's process group (a node or OOM kill), then
  start it again at once;
* :class:`Terminate`: SIGTERM a child (a rolling update); it must finish the
  batch in hand, commit, leave its group and exit 0 within the grace period;
  then start it again;
* :class:`RollingRestart`: the same for every stream service in turn;
* :class:`RedisOutage`: stop the private Redis for a while (clean shutdown,
  so the append-only file is complete), then start it on the same port with
  its data;
* :class:`TritonOutage`: stop Triton for a while, then start it again;
* :class:`ModelUnloaded`: leave Triton up but unload the model for a while
  (Triton answers "not ready" / "unknown model"), then load it again.

Every fault waits (up to ten seconds) until the consumer groups it affects
have work in hand, then strikes, and notes when it struck, when the broken
part was back, and the groups' lag just before it struck (non-zero: it hit
work in flight).
"""

import json
import logging
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Protocol

from cxrwatch.embedded.stack import SERVICES

from tests.faults.drain import OffsetReader
from tests.faults.redis_server import PrivateRedis
from tests.faults.stack import FaultStack

logger = logging.getLogger(__name__)

GRACE_S = 15.0
"""SIGTERM grace period, as the embedded stack and the Deployments give."""


@dataclass
class Timeline:
    """What a fault did and when (``time.monotonic`` seconds)."""

    struck_at: float | None = None
    healed_at: float | None = None
    lag_at_strike: int | None = None
    notes: list[str] = field(default_factory=list)


class Fault(Protocol):
    """One fault: where it may strike, whom it affects, how it strikes."""

    @property
    def name(self) -> str:
        """How the fault reads in the table."""

    @property
    def waves(self) -> tuple[int, ...]:
        """The waves it may strike in."""

    @property
    def groups(self) -> tuple[str, ...]:
        """The consumer groups it interrupts."""

    def strike(
        self, stack: FaultStack, server: PrivateRedis, timeline: Timeline
    ) -> None:
        """Break, wait, heal; record the moments in ``timeline``."""


def _lag(stack: FaultStack, groups: tuple[str, ...], busy_within_s: float = 10) -> int:
    """The groups' lag, read once they have work in hand (or the time is up).

    A service that keeps up is idle most of the time; striking while it has
    records not yet committed is what tests redelivery.
    """
    if not groups:
        return 0
    reader = OffsetReader(stack.bootstrap)
    deadline = time.monotonic() + busy_within_s
    try:
        while True:
            offsets = reader.read()
            lag = sum(offsets.lag(group) for group in groups)
            if lag or time.monotonic() > deadline:
                return lag
            time.sleep(0.05)
    finally:
        reader.close()


@dataclass(frozen=True)
class Kill:
    """SIGKILL one child, then start it again."""

    child: str
    waves: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"kill -9 {self.child}"

    @property
    def groups(self) -> tuple[str, ...]:
        return () if self.child == "api" else (f"cxrwatch-{self.child}",)

    def strike(
        self, stack: FaultStack, server: PrivateRedis, timeline: Timeline
    ) -> None:
        timeline.lag_at_strike = _lag(stack, self.groups) if self.groups else None
        timeline.struck_at = time.monotonic()
        stack.kill(self.child)
        stack.start_again(self.child)
        timeline.healed_at = time.monotonic()


@dataclass(frozen=True)
class Terminate:
    """SIGTERM one child; it must exit 0 within the grace period."""

    child: str
    waves: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"SIGTERM {self.child}"

    @property
    def groups(self) -> tuple[str, ...]:
        return (f"cxrwatch-{self.child}",)

    def strike(
        self, stack: FaultStack, server: PrivateRedis, timeline: Timeline
    ) -> None:
        timeline.lag_at_strike = _lag(stack, self.groups)
        timeline.struck_at = time.monotonic()
        code, took = stack.terminate(self.child, timeout_s=GRACE_S)
        timeline.notes.append(f"{self.child} exited {code} in {took:.1f} s")
        if code != 0:
            timeline.notes.append(f"PROBLEM: {self.child} exit code {code}")
        stack.start_again(self.child)
        timeline.healed_at = time.monotonic()


@dataclass(frozen=True)
class RollingRestart:
    """SIGTERM each stream service in turn, as a rolling update does.

    Each must exit 0 within the grace period; it is started again and has to
    answer ready before the next one goes.
    """

    waves: tuple[int, ...]
    name: str = "rolling restart"
    groups: tuple[str, ...] = tuple(f"cxrwatch-{s}" for s in SERVICES)

    def strike(
        self, stack: FaultStack, server: PrivateRedis, timeline: Timeline
    ) -> None:
        timeline.lag_at_strike = _lag(stack, self.groups)
        timeline.struck_at = time.monotonic()
        for service in SERVICES:
            code, took = stack.terminate(service, timeout_s=GRACE_S)
            timeline.notes.append(f"{service} exited {code} in {took:.1f} s")
            if code != 0:
                timeline.notes.append(f"PROBLEM: {service} exit code {code}")
            stack.start_again(service)
            stack.wait_ready(service)
        timeline.healed_at = time.monotonic()


@dataclass(frozen=True)
class RedisOutage:
    """The private Redis stopped for ``seconds``, then started with its data."""

    seconds: float
    waves: tuple[int, ...]
    name: str = "Redis down"
    groups: tuple[str, ...] = (
        "cxrwatch-clinical",
        "cxrwatch-joiner",
        "cxrwatch-alerter",
    )

    def strike(
        self, stack: FaultStack, server: PrivateRedis, timeline: Timeline
    ) -> None:
        timeline.lag_at_strike = _lag(stack, self.groups)
        timeline.struck_at = time.monotonic()
        server.stop()
        time.sleep(self.seconds)
        server.start()
        timeline.healed_at = time.monotonic()


@dataclass(frozen=True)
class TritonOutage:
    """Triton stopped for ``seconds``, then started again."""

    seconds: float
    waves: tuple[int, ...]
    name: str = "Triton down"
    groups: tuple[str, ...] = ("cxrwatch-scorer",)

    def strike(
        self, stack: FaultStack, server: PrivateRedis, timeline: Timeline
    ) -> None:
        timeline.lag_at_strike = _lag(stack, self.groups)
        timeline.struck_at = time.monotonic()
        code, took = stack.terminate("triton", timeout_s=30)
        timeline.notes.append(f"triton exited {code} in {took:.1f} s")
        time.sleep(max(0.0, self.seconds - took))
        stack.start_again("triton")
        stack.wait_ready("triton", timeout_s=180)
        timeline.healed_at = time.monotonic()


@dataclass(frozen=True)
class ModelUnloaded:
    """The model unloaded from a running Triton for ``seconds``, then loaded."""

    seconds: float
    waves: tuple[int, ...]
    model: str = "cxr_fusion"
    name: str = "model unloaded"
    groups: tuple[str, ...] = ("cxrwatch-scorer",)

    def strike(
        self, stack: FaultStack, server: PrivateRedis, timeline: Timeline
    ) -> None:
        timeline.lag_at_strike = _lag(stack, self.groups)
        timeline.struck_at = time.monotonic()
        self._control(stack, "unload")
        time.sleep(self.seconds)
        self._control(stack, "load")
        timeline.healed_at = time.monotonic()

    def _control(self, stack: FaultStack, action: str) -> None:
        port = stack.settings.triton_http_port
        url = f"http://127.0.0.1:{port}/v2/repository/models/{self.model}/{action}"
        request = urllib.request.Request(
            url, data=json.dumps({}).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            if response.status != 200:
                raise RuntimeError(f"Triton refused to {action} {self.model}")
