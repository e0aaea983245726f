"""Which remembered radiographs a clinical update affects, and as of when.

For a radiograph acquired at T:

* a value observed in [T - look-back, T] arrived late: score T again, as of T;
* a value observed after T, up to T + validity, is news about the patient
  since the image: score the latest radiograph acquired before it, as of the
  newest such value.
"""

from collections.abc import Sequence
from datetime import datetime, timedelta

from cxrwatch.core.events import Radiograph


def rescore_times(
    radiographs: Sequence[Radiograph],
    observed: Sequence[datetime],
    lookback: timedelta,
    validity: timedelta,
) -> list[tuple[Radiograph, datetime]]:
    """Pairs of (radiograph, as-of time) to score again, oldest image first.

    ``radiographs`` must be sorted by acquisition time.
    """
    chosen: dict[str, tuple[Radiograph, datetime]] = {}
    for radiograph in radiographs:
        acquired = radiograph.acquired_at
        if any(acquired - lookback <= t <= acquired for t in observed):
            chosen[radiograph.radiograph_id] = (radiograph, acquired)
    if radiographs:
        later = [t for t in observed if t > radiographs[0].acquired_at]
        if later:
            newest = max(later)
            latest = [r for r in radiographs if r.acquired_at < newest][-1]
            if newest <= latest.acquired_at + validity:
                chosen[latest.radiograph_id] = (latest, newest)
    return sorted(chosen.values(), key=lambda pair: pair[0].acquired_at)
