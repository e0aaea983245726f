"""What an observation says, independent of the message format it came in.

A FHIR ``value[x]`` or component value and an HL7 v2 OBX-5 are each read into
one of these before the feature's value is worked out from it.
"""

from dataclasses import dataclass

from cxrwatch.clinical.codes import Coding

COMPARATORS = frozenset({"<", "<=", ">", ">="})


@dataclass(frozen=True, slots=True)
class Quantity:
    """A number with the unit the sender gave (``None`` when it gave none).

    ``comparator`` marks a censored result such as ``<5``: it is stored at its
    limit, which is how a look-back model best reads "below the assay's range".
    """

    value: float
    unit: str | None
    comparator: str | None = None


@dataclass(frozen=True, slots=True)
class CodedAnswer:
    """A coded value: (system, code) pairs and the free text, if any."""

    codings: tuple[Coding, ...]
    text: str | None = None

    @property
    def codes(self) -> list[str]:
        """The codes, without their systems, in the order given."""
        return [code for _system, code in self.codings if code]


Answer = Quantity | CodedAnswer | bool
