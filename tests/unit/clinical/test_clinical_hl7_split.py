"""The direct split of standard-delimiter messages reads what python-hl7 reads.

Every field, repetition, component and subcomponent the reader could ask for is
compared between the two, on the stored samples, on this suite's messages and on
generated ones full of separators, escapes, empty parts and white space.
"""

import random

import hl7
import pytest
from cxrwatch.clinical.hl7v2 import _field, _repetitions, _text, split_segments

from tests.unit.clinical.test_clinical_hl7v2 import MSH, OBR, PID, VITALS

PATHS = [
    (repetition, component, subcomponent)
    for repetition in (1, 2, 3)
    for component in (1, 2, 3, 4, 5, 6)
    for subcomponent in (1, 2, 3)
]
PIECES = [
    "",
    "A",
    "12.5",
    " x ",
    "mg/dL",
    "\\S\\",
    "\\F\\",
    "\\T\\",
    "\\R\\",
    "\\E\\",
    "\\X41\\",
    "\\.br\\",
    "LN",
    "a b",
    "<5",
    "~",
    "^",
    "&",
    "^^",
    "&&",
]


def generated(seed: int) -> str:
    rng = random.Random(seed)
    segments = [f"MSH|^~\\&|APP|FAC|||20210309143500||ORU^R01|G{seed}|P|2.5.1"]
    for name in ("PID", "OBR", "OBX", "OBX", "NTE", "OBX"):
        fields = [
            "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 5)))
            for _ in range(rng.randint(1, 16))
        ]
        segments.append("|".join([name, *fields]))
    return "\r".join(segments)


def samples(shared_data) -> list[str]:
    files = sorted((shared_data / "hl7v2").glob("*.hl7"))
    texts = [_text(path.read_bytes()) for path in files]
    texts.append("\r".join([MSH, PID, OBR, *VITALS]))
    return texts + [generated(seed) for seed in range(40)]


def library_value(segment, number, repetition, component, subcomponent) -> str:
    try:
        value = segment.extract_field(
            field_num=number,
            repeat_num=repetition,
            component_num=component,
            subcomponent_num=subcomponent,
        )
    except IndexError:
        return ""
    return str(value).strip()


def test_split_and_library_read_the_same_values(shared_data):
    compared = 0
    for text in samples(shared_data):
        parsed = [s for s in hl7.parse(text) if str(s)]
        split = split_segments(text)
        assert [_field(s, 0) for s in split] == [str(s[0][0]) for s in parsed]
        for fast, slow in zip(split, parsed, strict=True):
            for number in range(1, len(slow) + 2):
                if _field(fast, 0) == "MSH" and number in (1, 2):
                    continue  # the delimiters themselves, never read
                assert _repetitions(fast, number) == _repetitions(slow, number)
                for path in PATHS:
                    expected = library_value(slow, number, *path)
                    assert (
                        _field(
                            slow,
                            number,
                            path[0],
                            component=path[1],
                            subcomponent=path[2],
                        )
                        == expected
                    ), (text, number, path)
                    assert (
                        _field(
                            fast,
                            number,
                            path[0],
                            component=path[1],
                            subcomponent=path[2],
                        )
                        == expected
                    ), (text, number, path)
                    compared += 1
    assert compared > 10_000


@pytest.mark.parametrize("delimiters", ["MSH|^~\\&#|", "MSH#^~\\&#", "MSH|^~/&|"])
def test_other_delimiters_are_left_to_the_library(hl7v2, delimiters):
    separator = delimiters[3]
    message = delimiters + separator.join(
        ["APP", "FAC", "", "", "20210309143500", "", "ORU^R01", "X1", "P", "2.5.1"]
    )
    pid = separator.join(["PID", "1", "", "MRN7^^^HOSP^MR"])
    obx = separator.join(
        ["OBX", "1", "NM", "8867-4^HR^LN", "", "80", "bpm", "", "", "", "", "F"]
    )
    reading = hl7v2.read("\r".join([message, pid, obx]).encode())
    [stored] = reading.patients["MRN7"].observations
    assert stored.value == 80.0
