"""Topic names. The version is part of the name: a breaking change makes a new one."""

DICOM_INSTANCES = "dicom.instances.v1"
EHR_OBSERVATIONS = "ehr.observations.v1"
IMAGING_RADIOGRAPHS = "imaging.radiographs.v1"
CLINICAL_UPDATES = "clinical.updates.v1"
INFERENCE_REQUESTS = "inference.requests.v1"
RISK_SCORES = "risk.scores.v1"
ALERTS = "alerts.deterioration.v1"
DEADLETTER = "deadletter.v1"

ALL = (
    DICOM_INSTANCES,
    EHR_OBSERVATIONS,
    IMAGING_RADIOGRAPHS,
    CLINICAL_UPDATES,
    INFERENCE_REQUESTS,
    RISK_SCORES,
    ALERTS,
    DEADLETTER,
)

# Topics whose records carry whole DICOM objects or image tensors.
LARGE_MESSAGE_TOPICS = (
    DICOM_INSTANCES,
    IMAGING_RADIOGRAPHS,
    INFERENCE_REQUESTS,
    DEADLETTER,
)
