"""System shared memory for the image tensor, when Triton runs on this host.

A batch of 32 images is 6.4 MB of FP32; over gRPC it is serialised into a
protobuf, copied through the socket and parsed again. Through POSIX shared
memory the scorer writes the batch once into a region the server has mapped,
and the request carries only the region's name.

* Regions are created and registered once, at start, one per batch that may
  be in flight, each big enough for a full batch in the declared dtype; every
  batch borrows one and gives it back (an asyncio queue), so none is shared.
* Names carry the host and process id (``cxrwatch-scorer-<host>-<pid>-<model>-
  <n>``); at start the server's registrations left by scorer processes of this
  host that are no longer alive are unregistered, so a killed scorer (whose
  memory the OS reclaims) leaves no registration behind for long.
* A server restart forgets every registration: :meth:`ImageRegions.register`
  is called again by the backend when a request names a region the server
  does not know.
* Only a server on this host can map the regions; ``CXRWATCH_TRITON_SHARED_
  MEMORY=auto`` uses them for a loopback address and falls back to the wire
  when the server cannot open them (another container, say).
"""

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import numpy as np
import tritonclient.utils.shared_memory as system_shm
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

logger = logging.getLogger(__name__)

NAME_PREFIX = "cxrwatch-scorer-"
LOOPBACK_HOSTS = ("localhost", "127.", "[::1]", "::1")
IN_USE_RETRIES = 40


def is_loopback(url: str) -> bool:
    """Whether a ``host:port`` gRPC address names this host."""
    host = url.split("//")[-1]
    return any(host.startswith(prefix) for prefix in LOOPBACK_HOSTS)


@dataclass
class Region:
    """One registered region: its Triton name and its client-side handle."""

    name: str
    key: str
    byte_size: int
    handle: system_shm.SharedMemoryRegion

    def write(self, array: np.ndarray, dtype: np.dtype) -> int:
        """Copy ``array`` into the region as ``dtype``; return the bytes used."""
        view = system_shm.get_contents_as_numpy(self.handle, dtype, array.shape)
        np.copyto(view, array, casting="same_kind")
        used = int(view.nbytes)
        del view  # a live view would block closing the mapping
        return used


class ImageRegions:
    """A pool of shared-memory regions for image batches of one model."""

    def __init__(
        self,
        client: InferenceServerClient,
        model: str,
        count: int,
        byte_size: int,
    ) -> None:
        self._client = client
        self._model = model
        self._byte_size = byte_size
        self._regions = [self._create(n) for n in range(count)]
        self._free: asyncio.Queue[Region] = asyncio.Queue()
        for region in self._regions:
            self._free.put_nowait(region)

    def _create(self, n: int) -> Region:
        name = f"{_host_prefix()}{os.getpid()}-{self._model}-{n}"
        key = f"/{name}"
        handle = system_shm.create_shared_memory_region(
            name, key, self._byte_size, create_only=False
        )
        return Region(name, key, self._byte_size, handle)

    async def register(self) -> None:
        """Register with the server each region it does not hold (yet, or again).

        Regions the server already holds as they are stay registered, so a
        batch in flight on one of them is not disturbed.

        Raises
        ------
        InferenceServerException
            When the server cannot map a region (it runs on another host or
            in another container) or does not answer.
        """
        held = await self._server_regions()
        await self._forget_dead_scorers(held)
        added = 0
        for region in self._regions:
            if held.get(region.name) == (region.key, region.byte_size):
                continue
            if region.name in held:
                await self._unregister_quietly(region.name)
            await self._client.register_system_shared_memory(
                region.name, region.key, region.byte_size
            )
            added += 1
        logger.info(
            "registered %d of %d shared-memory regions of %d bytes for %s",
            added,
            len(self._regions),
            self._byte_size,
            self._model,
        )

    async def _server_regions(self) -> dict[str, tuple[str, int]]:
        status = await self._client.get_system_shared_memory_status(as_json=True)
        return {
            name: (str(region.get("key")), int(region.get("byte_size", 0)))
            for name, region in status.get("regions", {}).items()
        }

    async def _forget_dead_scorers(self, held: dict[str, tuple[str, int]]) -> None:
        """Unregister regions left on the server by scorers that have exited."""
        for name in held:
            pid = _owner_pid(name)
            if pid is not None and not _alive(pid):
                logger.info("unregistering %s, left by exited scorer %d", name, pid)
                await self._unregister_quietly(name)

    @asynccontextmanager
    async def borrow(self) -> AsyncIterator[Region]:
        """A region for one batch, returned to the pool afterwards."""
        region = await self._free.get()
        try:
            yield region
        finally:
            self._free.put_nowait(region)

    async def close(self) -> None:
        """Unregister every region and release the memory."""
        for region in self._regions:
            await self._unregister_quietly(region.name)
            system_shm.destroy_shared_memory_region(region.handle)
        self._regions = []

    async def _unregister_quietly(self, name: str) -> None:
        # Triton lets go of a region a moment after its last response; and a
        # server that restarted or is gone has nothing to undo.
        for _ in range(IN_USE_RETRIES):
            try:
                await self._client.unregister_system_shared_memory(name)
                return
            except InferenceServerException as exc:
                if "in use" not in str(exc):
                    logger.debug("could not unregister %s: %s", name, exc)
                    return
                await asyncio.sleep(0.05)
        logger.warning("Triton still holds %s; leaving it registered", name)


def _host_prefix() -> str:
    return f"{NAME_PREFIX}{socket.gethostname()}-"


def _owner_pid(name: str) -> int | None:
    """The pid of the scorer of this host that registered ``name``, if one did."""
    if not name.startswith(_host_prefix()):
        return None
    pid = name.removeprefix(_host_prefix()).split("-", 1)[0]
    return int(pid) if pid.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
