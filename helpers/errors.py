"""One family of errors: every condition a learner can meet derives from ``WorkshopError``.

Each class also derives from the built-in exception it refines (``ValueError`` for bad input, ``LookupError``
for something not built yet, ``RuntimeError`` for a job or service that failed), so ``except ValueError`` keeps
working, while notebooks, the panel and the web app need to catch one name only: ``WorkshopError``. Every message
names the input at fault and the fix.
"""

from __future__ import annotations


class WorkshopError(Exception):
    """Base of every error the workshop raises on purpose; the message says what to do instead."""


class ConfigError(WorkshopError, ValueError):
    """A workshop setting has a value it cannot take; the message names the setting and the fix."""


class ModelNotAvailable(WorkshopError, RuntimeError):
    """A model cannot be found or prepared; the message names the package or folder and the fix."""


class ManifestError(WorkshopError, ValueError):
    """A manifest entry or field is wrong; the message names the entry, the field and the fix."""


class SourceUnavailable(WorkshopError, RuntimeError):
    """A source could not be fetched (host unreachable, unknown ref or package); the message says what to try."""


class NotReady(WorkshopError, LookupError):
    """A step's input is missing because an earlier step has not run; the message names that notebook."""


class SourceNotReady(NotReady):
    """A later step asked for a source that step 1 has not completed."""


class DataNotReady(NotReady):
    """The MDS of step 2 (or another step's data) is missing; the message says which notebook writes it."""


class JsonlError(WorkshopError, ValueError):
    """A JSONL input line is malformed; the message names the file, the line number and what is wrong."""


class DataError(WorkshopError, ValueError):
    """Input data or a conversion parameter cannot be used; the message names it and the fix."""


class RunSpecError(WorkshopError, ValueError):
    """A yaml cannot be run as given: unknown file, unfilled or unknown placeholders, missing token."""


class RunFailed(WorkshopError, RuntimeError):
    """The job ran and failed; the message carries the last lines of its log."""


class CheckpointError(WorkshopError, ValueError):
    """A checkpoint is missing, unsafe or unreadable as a Composer checkpoint; the message names the path."""


class ServiceError(WorkshopError, RuntimeError):
    """A loopback service could not start or answer; the message says why and where its log is."""


class DeployError(ServiceError):
    """The model cannot be packaged or served; the message names the folder, port or log and the fix."""


class QAError(WorkshopError, ValueError):
    """A question, index or model the QA step cannot use; the message says what to do instead."""


class EvalSetError(WorkshopError, ValueError):
    """An evaluation file is malformed; the message names the entry and the field."""


class BusyError(WorkshopError, OSError):
    """Several processes kept writing the same folder at once; running the step again settles it."""
