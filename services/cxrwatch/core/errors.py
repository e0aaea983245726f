"""The project's exceptions.

::

    CxrwatchError
    ├── InvalidInput            the message can never be processed: dead-letter it
    │   ├── UnsupportedInput    well-formed, but refused by policy (syntax, colour)
    │   └── MissingPatient      no usable patient identifier
    ├── DependencyUnavailable   Redis, Triton or the broker is down: retry, no commit
    ├── ContractMismatch        the model or a schema disagrees with the manifest
    └── PublishFailed           the broker refused an output (too large, timed out)

Third-party errors are translated into these at the boundary, chained with
``from exc``, so the stream runtime decides retry or dead-letter on our classes alone.
"""


class CxrwatchError(Exception):
    """Base class of every error raised on purpose by cxrwatch."""


class InvalidInput(CxrwatchError):
    """A message that no retry can fix; it goes to the dead-letter topic."""


class UnsupportedInput(InvalidInput):
    """Well-formed input that the policy refuses to process."""


class MissingPatient(InvalidInput):
    """Input without a usable patient identifier; it is never joined to anyone."""


class DependencyUnavailable(CxrwatchError):
    """A server the service needs does not answer; the record is retried later."""


class ContractMismatch(CxrwatchError):
    """The served model, the manifest or a schema disagree; the service refuses."""


class PublishFailed(CxrwatchError):
    """The broker did not accept an output record."""
