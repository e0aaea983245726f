"""Samples readiness and consumer progress while a case runs.

Every half second: each stream service's ``/readyz``, the API's ``/readyz``
(Redis reachable) and, every second sample, each consumer group's committed
offsets and exact lag. From these the case reads which services reported
not-ready, and when the pipeline recovered from a fault.
"""

import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from cxrwatch.embedded.stack import SERVICES

from tests.faults.drain import OffsetReader, Offsets
from tests.faults.stack import FaultStack

logger = logging.getLogger(__name__)

WATCHED = (*SERVICES, "api")


@dataclass(frozen=True)
class Sample:
    """Readiness of every service, and the offsets when they were read."""

    at: float
    ready: dict[str, bool]
    offsets: Offsets | None


class Monitor:
    """A thread that samples the stack until stopped."""

    def __init__(self, stack: FaultStack, period_s: float = 0.5) -> None:
        self._stack = stack
        self._period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="monitor", daemon=True)
        self.samples: list[Sample] = []

    def start(self) -> None:
        """Begin sampling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling and wait for the thread."""
        self._stop.set()
        self._thread.join(timeout=30)

    def wait_for_offsets_after(self, moment: float, timeout_s: float = 15) -> None:
        """Wait until a sample with offsets was taken after ``moment``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(s.at > moment and s.offsets for s in self.samples[-4:]):
                return
            time.sleep(0.1)

    def not_ready(self) -> set[str]:
        """Services that answered not-ready (or nothing) at least once."""
        return {
            name
            for sample in self.samples
            for name, ok in sample.ready.items()
            if not ok
        }

    def recovered_at(self, since: float, groups: tuple[str, ...]) -> float | None:
        """First moment after ``since`` when all is ready and ``groups`` moved on.

        A group has moved on when it committed past where it stood at
        ``since``, or has nothing left to do.
        """
        baseline = self._offsets_at(since)
        for sample in self.samples:
            if sample.at < since or not all(sample.ready.values()):
                continue
            if not groups:
                return sample.at
            if sample.offsets is None or baseline is None:
                continue
            offsets = sample.offsets
            if all(
                offsets.lag(g) == 0 or offsets.progress(g) > baseline.progress(g)
                for g in groups
            ):
                return sample.at
        return None

    def _offsets_at(self, moment: float) -> Offsets | None:
        before = [s for s in self.samples if s.offsets is not None and s.at <= moment]
        return before[-1].offsets if before else None

    def _run(self) -> None:
        reader = OffsetReader(self._stack.bootstrap)
        count = 0
        try:
            while not self._stop.is_set():
                at = time.monotonic()
                ready = {name: self._ready(name) for name in WATCHED}
                offsets = None
                if count % 2 == 0:
                    try:
                        offsets = reader.read()
                    except Exception as exc:
                        logger.debug("offsets not read: %s", exc)
                self.samples.append(Sample(at, ready, offsets))
                count += 1
                self._stop.wait(max(0.0, self._period_s - (time.monotonic() - at)))
        finally:
            reader.close()

    def _ready(self, name: str) -> bool:
        if name != "api":
            return self._stack.is_ready(name)
        request = urllib.request.Request(
            f"{self._stack.api_url}/readyz",
            headers={"X-API-Key": self._stack.settings.api_key},
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False
