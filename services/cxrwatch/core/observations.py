"""Recent observations per patient in Redis, written by clinical, read by joiner.

Key layout (``P`` is the prefix, ``{K}`` the patient key inside a Redis Cluster
hash tag, so that one patient's keys share a slot and one script can touch them):

``P:obs:{K}:src`` (hash)
    source id → ``version|status|effective_ms|feature_index|value``. One field per
    source observation (a FHIR Observation or component, an HL7 OBX), holding its
    latest version. A withdrawn observation stays as a tombstone whose status is
    ``entered-in-error``, so that an older version delivered late cannot revive it.
``P:obs:{K}:series`` (sorted set)
    the values in force: member source id, score ``feature_index * 10**13 +
    effective_ms`` (feature index from 1, in manifest order). Each feature owns
    one score range, so a snapshot reads a feature's latest value in its look-back
    with one ``ZREVRANGEBYSCORE … LIMIT 0 1``, and moving a source to another
    time or feature is one ``ZADD``. Effective times must lie in 1970..2286.
``P:obs:{K}:idx`` (sorted set)
    every source id of the patient, tombstones included, by effective time in
    epoch milliseconds: the patient's newest time, and what to trim.
``P:demo:{K}`` (hash)
    ``birth_date`` (ISO date) and ``sex`` (``M``, ``F`` or ``O``).
``P:receipt:{K}:<receipt id>`` (string, short-lived)
    the changes a message made, kept until its outputs are committed, so that a
    redelivery after a crash between the write and the produce re-emits them.

Write rules (one Lua script per patient and call, so each call is atomic):

* a higher ``version`` replaces a lower one for the same source id; a lower one
  changes nothing (a stale redelivery); an identical record changes nothing (a
  duplicate); the same version with other content replaces it (last writer wins,
  since nothing tells the two apart);
* ``entered-in-error`` removes the value from its feature and leaves a tombstone;
* values older than ``retention_hours`` before the patient's newest effective
  time are refused and trimmed, and every key of the patient expires
  ``retention_hours`` after its last write, so memory per patient is bounded.
"""

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import redis.asyncio
from redis.exceptions import NoScriptError, RedisError

from cxrwatch.core.errors import DependencyUnavailable, InvalidInput
from cxrwatch.core.ids import patient_ref
from cxrwatch.core.manifest import FeatureManifest

logger = logging.getLogger(__name__)

ObservationStatus = Literal[
    "preliminary", "final", "amended", "corrected", "entered-in-error"
]
Sex = Literal["M", "F", "O"]

WITHDRAWN: ObservationStatus = "entered-in-error"
_MAX_VERSION = 2**53  # Lua numbers are doubles
_YEAR_S = 365.2425 * 86400.0

# KEYS: src, idx, series, demo, receipt. ARGV[1]: "retention ms|ttl s|receipt ttl
# s (0: no receipt)|birth date|sex" (empty to leave them), then per observation:
# source id, record, series score. Returns {outcomes, replayed receipt or ""}; an
# outcome is {code} or, for a withdrawal, {code, effective ms, feature index,
# value}.
_PUT_SCRIPT = """
local src, idx, series, demo, receipt = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local WITHDRAWN = 'entered-in-error'
local RECORD = '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$'  -- also the settings' shape
local r, t, rt, birth, sex = string.match(ARGV[1], RECORD)
local retention, ttl, receipt_ttl = tonumber(r), tonumber(t), tonumber(rt)
if birth ~= '' then redis.call('HSET', demo, 'birth_date', birth) end
if sex ~= '' then redis.call('HSET', demo, 'sex', sex) end

local newest = nil
local top = redis.call('ZREVRANGE', idx, 0, 0, 'WITHSCORES')
if top[2] then newest = tonumber(top[2]) end
for i = 2, #ARGV, 3 do
  local _, status, t = string.match(ARGV[i + 1], RECORD)
  t = tonumber(t)
  if status ~= WITHDRAWN and (newest == nil or t > newest) then newest = t end
end
local cutoff = newest and (newest - retention) or nil

local outcomes, changed = {}, {}
for i = 2, #ARGV, 3 do
  local sid, record, score = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local v, status, t, f, x = string.match(record, RECORD)
  local version, effective = tonumber(v), tonumber(t)
  local cur = redis.call('HGET', src, sid)
  local cv, cs, ct, cf, cx
  if cur then
    cv, cs, ct, cf, cx = string.match(cur, RECORD)
    cv = tonumber(cv)
  end
  local live = cur and cs ~= WITHDRAWN
  local outcome
  if cur and version < cv then
    outcome = {'stale'}
  elseif cur == record then
    outcome = {'same'}
  elseif status == WITHDRAWN then
    if live then
      redis.call('ZREM', series, sid)
      redis.call('HSET', src, sid, table.concat({v, status, ct, cf, cx}, '|'))
      outcome = {'withdrawn', ct, cf, cx}
    elseif cur then
      if version > cv then
        redis.call('HSET', src, sid, table.concat({v, status, ct, cf, cx}, '|'))
      end
      outcome = {'same'}
    elseif cutoff and effective < cutoff then
      outcome = {'expired'}
    else
      redis.call('HSET', src, sid, record)
      redis.call('ZADD', idx, t, sid)
      outcome = {'tombstone'}
    end
  elseif cutoff and effective < cutoff then
    outcome = {'expired'}
  else
    redis.call('HSET', src, sid, record)
    redis.call('ZADD', series, score, sid)
    redis.call('ZADD', idx, t, sid)
    if live then outcome = {'replaced'} else outcome = {'new'} end
  end
  outcomes[#outcomes + 1] = outcome
  local code = outcome[1]
  if code == 'new' or code == 'replaced' or code == 'withdrawn' then
    changed[#changed + 1] = {sid, code, outcome[2] or '', outcome[3] or '',
                             outcome[4] or ''}
  end
end

if cutoff then
  local bound = string.format('(%.0f', cutoff)
  local old = redis.call('ZRANGEBYSCORE', idx, '-inf', bound)
  for first = 1, #old, 500 do  -- unpack() has a stack limit
    local chunk = {unpack(old, first, math.min(first + 499, #old))}
    redis.call('ZREM', series, unpack(chunk))
    redis.call('HDEL', src, unpack(chunk))
  end
  if #old > 0 then redis.call('ZREMRANGEBYSCORE', idx, '-inf', bound) end
end
for k = 1, 4 do redis.call('EXPIRE', KEYS[k], ttl) end

local replayed = ''
if receipt_ttl > 0 then
  if #changed > 0 then
    redis.call('SET', receipt, cjson.encode(changed), 'EX', receipt_ttl)
  else
    replayed = redis.call('GET', receipt) or ''
  end
end
return {outcomes, replayed}
"""

# KEYS: src, series, demo. ARGV: per feature, the highest then the lowest score
# of its look-back window. Returns {records ("" when none), demographics}.
_SNAPSHOT_SCRIPT = """
local records = {}
for i = 1, #ARGV, 2 do
  local top = redis.call('ZREVRANGEBYSCORE', KEYS[2], ARGV[i], ARGV[i + 1],
                         'LIMIT', 0, 1)
  local rec = ''
  if top[1] then rec = redis.call('HGET', KEYS[1], top[1]) or '' end
  records[#records + 1] = rec
end
return {records, redis.call('HGETALL', KEYS[3])}
"""

# Each feature's scores in the series: index * 10**13 + effective ms.
_FEATURE_SPAN_MS = 10**13

_CHANGED = frozenset({"new", "replaced", "withdrawn"})


def check_storable(moment: datetime, what: str) -> None:
    """Refuse a time the stores cannot hold (they key times as ms since 1970).

    Raises
    ------
    InvalidInput
        Naming ``what`` and the span, when ``moment`` is before 1970 or after
        the end of the span (late 2286).
    """
    if not STORABLE_FROM <= moment < STORABLE_UNTIL:
        raise InvalidInput(
            f"{what} {moment.isoformat()} is outside the times cxrwatch stores "
            f"({STORABLE_FROM.date()} to {STORABLE_UNTIL.date()})"
        )


@dataclass(frozen=True, slots=True)
class StoredObservation:
    """One value of one feature from one source observation, in canonical units.

    ``source_id`` names the source observation across its versions (a FHIR
    Observation id, an HL7 order and test code); ``version`` orders those
    versions, larger wins. ``value`` is ``None`` only in an incoming withdrawal
    that does not repeat the value it withdraws.
    """

    feature: str
    value: float | None
    unit: str
    effective_at: datetime
    source_id: str
    version: int = 0
    status: ObservationStatus = "final"

    def __post_init__(self) -> None:
        if self.effective_at.tzinfo is None:
            raise ValueError(f"effective_at {self.effective_at} carries no offset")
        if not 0 <= self.version < _MAX_VERSION:
            raise ValueError(f"version {self.version} is outside [0, 2**53)")
        if not 0 <= _epoch_ms(self.effective_at) < _FEATURE_SPAN_MS:
            raise ValueError(f"effective_at {self.effective_at} is not in 1970..2286")
        if self.value is None and self.status != WITHDRAWN:
            raise ValueError(f"{self.source_id}: only a withdrawal may have no value")


@dataclass(frozen=True)
class ClinicalSnapshot:
    """Each manifest feature's latest value in its look-back, as of one time.

    ``values`` and ``observed_at`` hold every manifest feature, in manifest
    order, ``None`` where nothing was observed in the window. Age and sex from
    demographics count as observed at ``as_of``.
    """

    values: dict[str, float | None]
    observed_at: dict[str, datetime | None] = field(default_factory=dict)
    as_of: datetime | None = None

    @property
    def missing(self) -> list[str]:
        """Features without a value, in manifest order."""
        return [name for name, value in self.values.items() if value is None]


@dataclass(frozen=True)
class PatientWrite:
    """What one message brings for one patient, written in one script call."""

    patient_key: str
    observations: Sequence[StoredObservation] = ()
    birth_date: date | None = None
    sex: Sex | None = None
    receipt: str | None = None


class ObservationStore:
    """Recent observations per patient and feature, bounded by a retention window."""

    def __init__(
        self,
        redis: "redis.asyncio.Redis",
        manifest: FeatureManifest,
        *,
        prefix: str = "cxr",
        retention_hours: float = 168.0,
        receipt_ttl_s: int = 86400,
    ) -> None:
        if retention_hours <= 0:
            raise ValueError(f"retention_hours must be > 0, not {retention_hours}")
        self._redis = redis
        self._manifest = manifest
        self._prefix = prefix
        self._retention_ms = round(retention_hours * 3_600_000)
        self._ttl_s = max(1, round(retention_hours * 3600))
        self._receipt_ttl_s = receipt_ttl_s
        self._index = {name: i for i, name in enumerate(manifest.names, start=1)}
        # Redis names a script by its SHA-1; no security rests on it.
        self._put_sha = hashlib.sha1(_PUT_SCRIPT.encode()).hexdigest()  # noqa: S324
        self._snapshot_script = redis.register_script(_SNAPSHOT_SCRIPT)

    async def put(
        self, patient_key: str, observations: Sequence[StoredObservation]
    ) -> list[StoredObservation]:
        """Store observations of one patient; return those that changed the store.

        A withdrawal comes back with the value and effective time it removed.

        Raises
        ------
        DependencyUnavailable
            If Redis does not answer.
        ValueError
            If an observation names a feature the manifest lacks.
        """
        [changed] = await self.write([PatientWrite(patient_key, observations)])
        return changed

    async def put_demographics(
        self, patient_key: str, *, birth_date: date | None, sex: Sex | None
    ) -> None:
        """Record birth date and sex; ``None`` leaves what is stored.

        Raises
        ------
        DependencyUnavailable
            If Redis does not answer.
        """
        await self.write([PatientWrite(patient_key, (), birth_date, sex)])

    async def write(
        self, batch: Sequence[PatientWrite]
    ) -> list[list[StoredObservation]]:
        """Apply several patients' writes in one round trip, in order.

        Returns, per write, the observations that changed the store. When a
        write with a ``receipt`` changes nothing but an earlier delivery with the
        same receipt did and was not released, that earlier change is returned
        again, so a redelivered message re-emits what it emitted the first time.

        Raises
        ------
        DependencyUnavailable
            If Redis does not answer; some writes may have been applied, and
            repeating the batch is safe.
        """
        commands = [self._put_command(item) for item in batch]
        try:
            try:
                replies = await self._send(commands)
            except NoScriptError:
                # Redis restarted or its scripts were flushed. Repeating writes
                # that did land changes nothing, and their receipts replay them.
                await self._redis.script_load(_PUT_SCRIPT)
                replies = await self._send(commands)
        except RedisError as exc:
            raise DependencyUnavailable(
                f"Redis did not store observations: {exc}"
            ) from exc
        return self._changes(batch, iter(replies))

    async def _send(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        # EVALSHA straight into a pipeline: the library's Script wrapper asks
        # Redis whether the script exists before every pipeline.
        pipe = self._redis.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute())

    async def release(self, receipts: Iterable[tuple[str, str]]) -> None:
        """Forget receipts (patient key, receipt) whose outputs are committed.

        Raises
        ------
        DependencyUnavailable
            If Redis does not answer.
        """
        keys = [self._key(patient_key, "receipt", r) for patient_key, r in receipts]
        if not keys:
            return
        try:
            await self._redis.delete(*keys)
        except RedisError as exc:
            raise DependencyUnavailable(
                f"Redis did not release receipts: {exc}"
            ) from exc

    async def snapshot(self, patient_key: str, as_of: datetime) -> ClinicalSnapshot:
        """Return each feature's latest value in ``[as_of - look-back, as_of]``.

        Raises
        ------
        DependencyUnavailable
            If Redis does not answer.
        ValueError
            If ``as_of`` carries no offset.
        """
        if as_of.tzinfo is None:
            raise ValueError(f"as_of {as_of} carries no offset")
        as_of_ms = min(_epoch_ms(as_of), _FEATURE_SPAN_MS - 1)
        bounds: list[int] = []
        for index, feature in enumerate(self._manifest.features, start=1):
            base = index * _FEATURE_SPAN_MS
            earliest = as_of_ms - round(feature.lookback_hours * 3_600_000)
            bounds += [base + as_of_ms, base + max(earliest, 0)]
        keys = [
            self._key(patient_key, "obs", "src"),
            self._key(patient_key, "obs", "series"),
            self._key(patient_key, "demo"),
        ]
        try:
            records, demographics = await self._snapshot_script(keys=keys, args=bounds)
        except RedisError as exc:
            raise DependencyUnavailable(
                f"Redis did not answer a snapshot: {exc}"
            ) from exc
        return self._snapshot(as_of, records, _pairs(demographics))

    async def latest_effective(
        self, patient_key: str, after: datetime, until: datetime
    ) -> datetime | None:
        """The newest effective time in ``(after, until]`` of any stored value.

        Withdrawn values count too: a re-score as of their time sees the same
        values as one just before it.

        Raises
        ------
        DependencyUnavailable
            If Redis does not answer.
        """
        try:
            rows = await self._redis.zrevrangebyscore(
                self._key(patient_key, "obs", "idx"),
                _epoch_ms(until),
                f"({_epoch_ms(after)}",
                start=0,
                num=1,
                withscores=True,
            )
        except RedisError as exc:
            raise DependencyUnavailable(f"Redis did not answer: {exc}") from exc
        if not rows:
            return None
        return _from_epoch_ms(int(float(rows[0][1])))

    def _key(self, patient_key: str, kind: str, *rest: str) -> str:
        return ":".join((self._prefix, kind, "{" + patient_key + "}", *rest))

    def _put_command(self, item: PatientWrite) -> tuple[Any, ...]:
        tagged = "{" + item.patient_key + "}"
        prefix = self._prefix
        receipt_ttl = self._receipt_ttl_s if item.receipt and item.observations else 0
        birth_date = item.birth_date.isoformat() if item.birth_date else ""
        settings = (
            f"{self._retention_ms}|{self._ttl_s}|{receipt_ttl}|{birth_date}|"
            f"{item.sex or ''}"
        )
        args: list[str | int] = [
            "EVALSHA",
            self._put_sha,
            5,
            f"{prefix}:obs:{tagged}:src",
            f"{prefix}:obs:{tagged}:idx",
            f"{prefix}:obs:{tagged}:series",
            f"{prefix}:demo:{tagged}",
            f"{prefix}:receipt:{tagged}:{item.receipt or '-'}",
            settings,
        ]
        for observation in item.observations:
            args += self._arguments(observation)
        return tuple(args)

    def _arguments(self, observation: StoredObservation) -> list[str | int]:
        try:
            index = self._index[observation.feature]
        except KeyError:
            raise ValueError(
                f"feature {observation.feature!r} is not in the manifest "
                f"{self._manifest.names}"
            ) from None
        value = "" if observation.value is None else repr(float(observation.value))
        effective_ms = _epoch_ms(observation.effective_at)
        record = (
            f"{observation.version}|{observation.status}|{effective_ms}|{index}|{value}"
        )
        return [
            observation.source_id,
            record,
            index * _FEATURE_SPAN_MS + effective_ms,
        ]

    def _changes(
        self, batch: Sequence[PatientWrite], replies: Any
    ) -> list[list[StoredObservation]]:
        changes: list[list[StoredObservation]] = []
        for item in batch:
            outcomes, replayed = next(replies)
            if not item.observations:
                changes.append([])
                continue
            changes.append(self._decode_outcomes(item, outcomes, _text(replayed)))
        return changes

    def _decode_outcomes(
        self, item: PatientWrite, outcomes: Sequence[Any], replayed: str
    ) -> list[StoredObservation]:
        expired = sum(_text(outcome[0]) == "expired" for outcome in outcomes)
        if expired:
            logger.info(
                "refused %d values of %s older than %s h before its newest",
                expired,
                patient_ref(item.patient_key),
                self._retention_ms / 3_600_000,
            )
        if replayed:
            entries = [tuple(entry) for entry in json.loads(replayed)]
        else:
            entries = [
                (observation.source_id, *(_text(v) for v in outcome), "", "", "")[:5]
                for observation, outcome in zip(
                    item.observations, outcomes, strict=True
                )
                if _text(outcome[0]) in _CHANGED
            ]
        by_source = {o.source_id: o for o in item.observations}
        return [
            self._changed(by_source[entry[0]], *entry[1:])
            for entry in entries
            if entry[0] in by_source
        ]

    def _changed(
        self,
        observation: StoredObservation,
        code: str,
        effective_ms: str,
        feature_index: str,
        value: str,
    ) -> StoredObservation:
        if code != "withdrawn":
            unit = self._manifest.by_name[observation.feature].unit
            return (
                observation
                if observation.unit == unit
                else replace(observation, unit=unit)
            )
        feature = self._manifest.names[int(feature_index) - 1]
        return replace(
            observation,
            feature=feature,
            unit=self._manifest.by_name[feature].unit,
            value=float(value) if value else None,
            effective_at=_from_epoch_ms(int(float(effective_ms))),
        )

    def _snapshot(
        self, as_of: datetime, records: Sequence[Any], demographics: dict[str, str]
    ) -> ClinicalSnapshot:
        values: dict[str, float | None] = {}
        observed_at: dict[str, datetime | None] = {}
        for feature, raw in zip(self._manifest.features, records, strict=True):
            value, when = _decode_record(_text(raw))
            if feature.name == "age":
                value, when = _age(demographics, as_of, value, when)
            elif feature.name == "sex" and demographics.get("sex"):
                value, when = _SEX_VALUES.get(demographics["sex"]), as_of
            values[feature.name] = value
            observed_at[feature.name] = when if value is not None else None
        return ClinicalSnapshot(as_of=as_of, values=values, observed_at=observed_at)


_SEX_VALUES: dict[str, float | None] = {"M": 1.0, "F": 0.0, "O": None}


def with_demographics(
    snapshot: ClinicalSnapshot, birth_date: date | None, sex: Sex | None
) -> ClinicalSnapshot:
    """``snapshot`` with age and sex from another source where it has none.

    The EHR's (FHIR Patient, HL7 PID) stay first; the image's header fills
    in for a patient the EHR has not described yet.
    """
    if snapshot.as_of is None:
        return snapshot
    values, observed_at = dict(snapshot.values), dict(snapshot.observed_at)
    if "age" in values and values["age"] is None and birth_date is not None:
        values["age"], observed_at["age"] = _age_at(birth_date, snapshot.as_of)
    if "sex" in values and values["sex"] is None and sex is not None:
        values["sex"] = _SEX_VALUES[sex]
        observed_at["sex"] = snapshot.as_of if values["sex"] is not None else None
    return ClinicalSnapshot(
        values=values, observed_at=observed_at, as_of=snapshot.as_of
    )


def _age(
    demographics: dict[str, str],
    as_of: datetime,
    observed: float | None,
    observed_at: datetime | None,
) -> tuple[float | None, datetime | None]:
    """Age in years at ``as_of``: from the birth date, else the last stated age."""
    if birth := demographics.get("birth_date"):
        return _age_at(date.fromisoformat(birth), as_of)
    if observed is None or observed_at is None:
        return None, None
    return observed + (as_of - observed_at).total_seconds() / _YEAR_S, observed_at


def _age_at(birth_date: date, as_of: datetime) -> tuple[float | None, datetime | None]:
    """Age in years at ``as_of``, observed then; none before the birth date."""
    born = datetime.combine(birth_date, datetime.min.time(), UTC)
    if born > as_of:
        return None, None
    return (as_of - born).total_seconds() / _YEAR_S, as_of


def _decode_record(record: str) -> tuple[float | None, datetime | None]:
    if not record:
        return None, None
    _version, status, effective_ms, _feature, value = record.split("|", 4)
    if status == WITHDRAWN or not value:
        return None, None
    return float(value), _from_epoch_ms(int(effective_ms))


def _epoch_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // _MILLISECOND


def _from_epoch_ms(milliseconds: int) -> datetime:
    return _EPOCH + milliseconds * _MILLISECOND


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
STORABLE_FROM = _EPOCH
"""The earliest time an observation or radiograph may carry."""
STORABLE_UNTIL = _EPOCH + _FEATURE_SPAN_MS * _MILLISECOND
"""The first time past the stores' span (2286-11-20)."""


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    texts = [_text(v) for v in flat]
    return dict(zip(texts[0::2], texts[1::2], strict=True))
