"""Imaging: DICOM objects to model-ready chest radiographs.

:func:`read_radiograph` is the pure step (bytes in, decoded radiograph out);
:mod:`cxrwatch.imaging.service` runs it as a stream service. The modules, in
the order an object passes through them: ``dataset`` (bytes to a data set),
``policy`` (score it or not), ``header`` with ``identity`` and ``timestamps``
(the event's attributes), ``pixel_data`` with ``jpeg2000`` (stored values,
reduced where the codec allows), ``grayscale`` (the value transforms),
``resampling`` (area averaging into a letterbox), ``decode`` (all of it).
"""

from cxrwatch.imaging.decode import DecodedRadiograph, read_radiograph
from cxrwatch.imaging.policy import CHEST_RADIOGRAPHS, NotScored, ScoringPolicy

__all__ = [
    "CHEST_RADIOGRAPHS",
    "DecodedRadiograph",
    "NotScored",
    "ScoringPolicy",
    "read_radiograph",
]
