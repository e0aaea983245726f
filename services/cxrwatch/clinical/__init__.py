"""The clinical service: FHIR R4 and HL7 v2 observations into recent values per patient.

Run it with ``python -m cxrwatch.clinical``; see :mod:`cxrwatch.clinical.service`.
"""
