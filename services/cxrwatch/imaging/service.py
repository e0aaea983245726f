"""The imaging service: DICOM objects in, model-ready radiograph events out.

* **consumes** ``dicom.instances.v1``: the record value is one DICOM object
  (a Part 10 file or a bare data set), the key the patient;
* **decodes** each object in a pool of worker processes
  (:func:`~cxrwatch.imaging.decode.read_radiograph` and the event's JSON), all
  records of a poll at once, each worker with single-threaded BLAS. Decoding
  is CPU-bound Python and C; in the event loop's process it would stall the
  consumer's heartbeats, and in a thread it would still hold the GIL through
  pydicom's parsing. A process also contains a codec that crashes: the pool
  is rebuilt, the records it was holding are retried one at a time, and the
  one that kills a fresh worker alone is dead-lettered. A decode that runs
  past ``CXRWATCH_DECODE_TIMEOUT_S`` (a codec in a loop) has its workers
  killed and is dead-lettered the same way. After
  ``CXRWATCH_DECODE_TASKS_PER_WORKER`` objects per worker the pool is retired
  (it finishes what it holds) and a fresh one takes the next objects, which
  bounds what a codec leaks. The service does this itself: Python 3.11's own
  ``max_tasks_per_child`` loses the work queued to a retiring worker and
  hangs the pool (it did, after exactly 500 objects under load);
* **emits** ``imaging.radiographs.v1``: a :class:`~cxrwatch.core.events.Radiograph`
  keyed by its Patient ID, ``ce_type`` ``org.cxrwatch.radiograph.v1``,
  ``ce_id`` = ``radiograph_id`` = uuid5 of the SOP Instance UID, so that a
  redelivered object yields the same event;
* **skips** what the policy does not score (:mod:`~cxrwatch.imaging.policy`:
  not CR/DX, not chest, not frontal, not human, multi-frame, for processing):
  no output, counted in ``cxrwatch_skipped_total{service="imaging",reason}``;
* **dead-letters** (through the runtime, which catches the handler's error):
  bytes that are no DICOM, truncated or damaged pixel data, a transfer syntax
  or photometric interpretation that is refused (both named), a missing or
  undecodable Patient ID, no acquisition time, an acquisition time more than
  ``CXRWATCH_IMAGING_MAX_FUTURE_MINUTES`` ahead of now (a wrong modality clock
  would make a patient's newest image, and age, years ahead) or before 1970,
  outside the times the stores hold;
* **commits**: the runtime commits a record's offset once its outputs, or its
  dead letter, are acknowledged by the broker; a skipped record has none and is
  committed with its batch. A crash before that redelivers it.
"""

import asyncio
import concurrent.futures
import logging
import multiprocessing
import os
import warnings
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiokafka import ConsumerRecord
from pydantic import Field, field_validator

from cxrwatch.core import topics
from cxrwatch.core.errors import InvalidInput
from cxrwatch.core.ids import patient_ref
from cxrwatch.core.kafka import Output
from cxrwatch.core.manifest import ImageSpec, load_manifest
from cxrwatch.core.metrics import SKIPPED
from cxrwatch.core.observations import check_storable
from cxrwatch.core.settings import ServiceSettings
from cxrwatch.core.stream import Outcome, process_each
from cxrwatch.imaging.decode import CE_TYPE, read_radiograph
from cxrwatch.imaging.jpeg2000 import reduced_decoding_available
from cxrwatch.imaging.policy import NotScored

logger = logging.getLogger(__name__)

SERVICE = "imaging"
Pool = concurrent.futures.ProcessPoolExecutor
CE_SOURCE = "cxrwatch/imaging"


class ImagingSettings(ServiceSettings):
    """Settings of the imaging service (``CXRWATCH_*``)."""

    batch_max_records: int = Field(
        8,
        ge=1,
        description="Most DICOM objects taken in one poll. A poll's events are "
        "published when its last object is decoded, so this bounds the wait "
        "of the first (64 objects at 40 ms is 2.5 s; 8 is 0.3 s).",
    )
    decode_workers: int = Field(
        max(1, min(4, (os.cpu_count() or 2) - 1)),
        ge=1,
        description="Worker processes that decode DICOM objects.",
    )
    decode_tasks_per_worker: int = Field(
        500,
        ge=1,
        description="Objects a worker decodes before it is replaced, bounding leaks.",
    )
    decode_timeout_s: float = Field(
        120.0,
        gt=0,
        description="Longest one object may take to decode before its worker "
        "is killed and the object dead-lettered.",
    )
    imaging_max_future_minutes: float = Field(
        60.0,
        ge=0,
        description="How far past now an acquisition time may lie (clock skew).",
    )

    @field_validator("facility_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"CXRWATCH_FACILITY_TIMEZONE={value!r} is not an IANA time zone; "
                "use a name such as 'Europe/Paris' or 'UTC'"
            ) from exc
        return value


@dataclass(frozen=True)
class RadiographRecord:
    """What a worker sends back: the event, ready to produce."""

    patient_key: str
    radiograph_id: str
    value: bytes
    reduction: int
    acquired_at: datetime


def radiograph_record(raw: bytes, image: ImageSpec, zone: str) -> RadiographRecord:
    """Decode one object into its event (runs in a worker process)."""
    decoded = read_radiograph(raw, image, ZoneInfo(zone))
    event = decoded.to_event()
    return RadiographRecord(
        patient_key=event.patient_key,
        radiograph_id=event.radiograph_id,
        value=event.model_dump_json().encode(),
        reduction=decoded.reduction,
        acquired_at=event.acquired_at,
    )


Decoding = asyncio.Future[RadiographRecord]
_THREAD_LIMITS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _one_thread_per_worker() -> None:
    """Have spawned workers run numpy's BLAS on one thread, unless told otherwise.

    The pool is the parallelism. BLAS threads on top of it fight the other
    workers for the cores: on a busy 2-core machine a 10 ms resize took 250 ms.
    Workers read these variables when they start; the parent's numpy is
    already loaded and keeps its own setting.
    """
    for variable in _THREAD_LIMITS:
        os.environ.setdefault(variable, "1")


def _quiet_worker() -> None:
    """Keep pydicom's per-object warnings out of the service log.

    Also a Rust codec's backtrace: pylibjpeg-rle panics on some damaged RLE,
    which becomes a dead letter, and Rust's panic hook writes to the worker's
    stderr, with some 80 lines of backtrace when ``RUST_BACKTRACE`` is set in
    the service's environment. Without it the hook still writes the panic's
    place and message (two lines, and a hint on a worker's first panic).
    """
    os.environ.pop("RUST_BACKTRACE", None)
    warnings.filterwarnings("ignore", module=r"pydicom(\..*)?")
    warnings.filterwarnings("ignore", module=r"glymur(\..*)?")
    logging.getLogger("pydicom").setLevel(logging.ERROR)


def _warm_up() -> bool:
    """Load what decoding needs in a new worker (this module, OpenJPEG)."""
    return reduced_decoding_available()


class ImagingProcessor:
    """Turns DICOM records into radiograph events; see the module docstring."""

    name = SERVICE
    input_topics: Sequence[str] = (topics.DICOM_INSTANCES,)

    def __init__(self, settings: ImagingSettings, image: ImageSpec | None = None):
        self.settings = settings
        self._image = image
        self._pool: Pool | None = None
        self._pool_tasks = 0
        self._successor: Pool | None = None

    @property
    def image(self) -> ImageSpec:
        """The model's image input, from the manifest."""
        if self._image is None:
            self._image = load_manifest(self.settings.manifest_path).image
        return self._image

    async def start(self) -> None:
        """Read the manifest and start the decoding processes."""
        logger.info(
            "imaging decodes to %dx%d with %d worker(s), facility time zone %s",
            self.image.height,
            self.image.width,
            self.settings.decode_workers,
            self.settings.facility_timezone,
        )
        self._pool = self._new_pool()

    async def stop(self) -> None:
        """Stop the decoding processes."""
        for pool in (self._pool, self._successor):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._pool = self._successor = None

    async def process(self, records: Sequence[ConsumerRecord]) -> list[Outcome]:
        """Decode the batch in parallel, then finish each record in order."""
        pending = {id(record): self._submit(record) for record in records}

        async def finish(record: ConsumerRecord) -> list[Output]:
            return await self._finish(record, *pending[id(record)])

        return await process_each(records, finish)

    def _submit(self, record: ConsumerRecord) -> tuple[Decoding, Pool]:
        loop = asyncio.get_running_loop()
        pool = self._ensure_pool()
        if not record.value:
            failed: Decoding = loop.create_future()
            failed.set_exception(InvalidInput("the record has no value: no DICOM"))
            return failed, pool
        arguments = (record.value, self.image, self.settings.facility_timezone)
        try:
            decoding = loop.run_in_executor(pool, radiograph_record, *arguments)
        except BrokenProcessPool:
            # A worker died since the last batch; the pool refuses new work.
            self._discard(pool)
            pool = self._ensure_pool()
            decoding = loop.run_in_executor(pool, radiograph_record, *arguments)
        return decoding, pool

    async def _finish(
        self, record: ConsumerRecord, pending: Decoding, pool: Pool
    ) -> list[Output]:
        try:
            result = await self._decoded(pending, pool)
        except NotScored as skip:
            SKIPPED.labels(SERVICE, skip.reason).inc()
            logger.info(
                "imaging skipped %s[%d]@%d: %s",
                record.topic,
                record.partition,
                record.offset,
                skip,
            )
            return []
        except BrokenProcessPool:
            result = await self._retry_alone(record, pool)
        self._check_acquisition_time(result)
        logger.info(
            "imaging radiograph %s for %s from %s[%d]@%d, decoded at 1/%d",
            result.radiograph_id,
            patient_ref(result.patient_key),
            record.topic,
            record.partition,
            record.offset,
            result.reduction,
        )
        return [
            Output(
                topic=topics.IMAGING_RADIOGRAPHS,
                key=result.patient_key,
                value=result.value,
                ce_type=CE_TYPE,
                ce_id=result.radiograph_id,
                ce_source=CE_SOURCE,
            )
        ]

    def _check_acquisition_time(self, result: RadiographRecord) -> None:
        tolerance = self.settings.imaging_max_future_minutes
        if result.acquired_at > datetime.now(UTC) + timedelta(minutes=tolerance):
            raise InvalidInput(
                f"acquired in the future, at {result.acquired_at.isoformat()}; "
                "check the modality's clock (tolerance "
                f"CXRWATCH_IMAGING_MAX_FUTURE_MINUTES={tolerance:g})"
            )
        check_storable(result.acquired_at, "acquisition time")

    async def _decoded(self, pending: Decoding, pool: Pool) -> RadiographRecord:
        """The worker's result, or its pool killed when it takes too long."""
        timeout = self.settings.decode_timeout_s
        try:
            return await asyncio.wait_for(pending, timeout)
        except TimeoutError:
            self._kill(pool)
            raise InvalidInput(
                f"decoding took longer than {timeout:g} s "
                "(CXRWATCH_DECODE_TIMEOUT_S); the decoder was killed and "
                "restarted, and this object is dead-lettered so the partition "
                "goes on"
            ) from None

    async def _retry_alone(
        self, record: ConsumerRecord, broken: Pool
    ) -> RadiographRecord:
        """Decode a record whose pool broke, alone in a fresh pool."""
        self._discard(broken)
        decoding, pool = self._submit(record)
        try:
            return await self._decoded(decoding, pool)
        except BrokenProcessPool as exc:
            self._discard(pool)
            raise InvalidInput(
                "the decoder process died while decoding this object (a codec "
                "crash or the memory limit); it is dead-lettered so the "
                "partition goes on"
            ) from exc

    def _ensure_pool(self) -> Pool:
        """The pool for the next object; retires one that has done its share.

        A worker takes about a second to start (pydicom, numpy, OpenJPEG), so
        the successor starts, and warms up, while the last tenth of the share
        is decoded: the switch then costs no object a wait.
        """
        share = self.settings.decode_tasks_per_worker * self.settings.decode_workers
        if self._pool is not None and self._pool_tasks >= share:
            logger.info("imaging retires its decoder pool after %d objects", share)
            # Queued decodes still finish in the retired pool; its workers
            # exit after them.
            self._pool.shutdown(wait=False)
            self._pool = None
        if self._pool is None:
            self._pool, self._successor = self._successor or self._new_pool(), None
            self._pool_tasks = 0
        self._pool_tasks += 1
        if self._successor is None and self._pool_tasks >= share - share // 10:
            self._successor = self._new_pool()
        return self._pool

    def _kill(self, pool: Pool) -> None:
        """Kill a pool whose worker does not come back, and drop it."""
        logger.warning("imaging decoder did not finish in time; killing its pool")
        # The executor has no public way to stop a running task before
        # Python 3.14 (terminate_workers); its process table is the one way.
        processes = getattr(pool, "_processes", None) or {}
        for process in list(processes.values()):
            process.kill()
        # The objects queued behind it fail with BrokenProcessPool and are
        # retried alone, as after a crash.
        pool.shutdown(wait=False)
        if self._pool is pool:
            self._pool = None

    def _discard(self, broken: Pool) -> None:
        """Drop a broken pool, once: the next submission starts a new one."""
        if self._pool is broken:
            logger.warning("imaging decoder pool broke; starting a new one")
            broken.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _new_pool(self) -> Pool:
        """A pool whose workers start now, not at the first object."""
        _one_thread_per_worker()
        # spawn, not fork: the parent runs an event loop and client threads.
        pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=self.settings.decode_workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_quiet_worker,
        )
        for _ in range(self.settings.decode_workers):
            pool.submit(_warm_up)
        return pool
