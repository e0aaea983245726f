"""Which model feature an observation code stands for.

LOINC comes first: each manifest feature lists its LOINC codes, recognised under
the FHIR system ``http://loinc.org``, the HL7 v2 coding system ``LN`` and the
LOINC OID. Codes of a hospital's own system are added by configuration,
``CXRWATCH_CLINICAL_LOCAL_CODES``, a JSON object of ``"system|code": "feature"``
(for example ``{"http://acme.org/vitals|HR": "heart_rate", "99LAB|CRP":
"crp"}``; the system is the FHIR coding system or the HL7 name of coding system,
empty when the message gives none). A local code is consulted only when no
coding of the observation is a mapped LOINC code.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cxrwatch.core.manifest import Feature, FeatureManifest

LOINC_SYSTEMS = frozenset(
    {
        "http://loinc.org",
        "LN",
        "LNC",
        "LOINC",
        "2.16.840.1.113883.6.1",
        "urn:oid:2.16.840.1.113883.6.1",
    }
)

Coding = tuple[str | None, str | None]


@dataclass(frozen=True)
class CodeMatch:
    """The feature an observation feeds and the code that said so."""

    feature: Feature
    system: str
    code: str

    @property
    def label(self) -> str:
        """The code as written in a log line or a refusal: ``LOINC 8480-6``."""
        if self.system in LOINC_SYSTEMS:
            return f"LOINC {self.code}"
        return f"{self.system}|{self.code}"


class FeatureCodes:
    """Maps observation codes to manifest features."""

    def __init__(
        self, manifest: FeatureManifest, local_codes: Mapping[str, str] | None = None
    ) -> None:
        self._loinc = manifest.by_loinc
        self._local: dict[tuple[str, str], Feature] = {}
        for key, name in (local_codes or {}).items():
            system, bar, code = key.rpartition("|")
            if not bar or not code:
                raise ValueError(
                    f"CXRWATCH_CLINICAL_LOCAL_CODES key {key!r} must read 'system|code'"
                )
            if name not in manifest.by_name:
                raise ValueError(
                    f"CXRWATCH_CLINICAL_LOCAL_CODES maps {key!r} to {name!r}, which "
                    f"is not a feature of the manifest {manifest.names}"
                )
            self._local[(system, code)] = manifest.by_name[name]

    def match(self, codings: Iterable[Coding]) -> CodeMatch | None:
        """Return the feature of the first mapped LOINC coding, else of the first
        configured local coding, else ``None``."""
        pairs = [(system or "", code or "") for system, code in codings]
        for system, code in pairs:
            if system in LOINC_SYSTEMS and code in self._loinc:
                return CodeMatch(self._loinc[code], system, code)
        for system, code in pairs:
            if (feature := self._local.get((system, code))) is not None:
                return CodeMatch(feature, system, code)
        return None
