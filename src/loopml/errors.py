"""The errors loopml raises for the caller: each names the bad value, what was expected, the fix.

The CLI turns any `LoopmlError` into its message and exit code 1, without a traceback.
"""


class LoopmlError(Exception):
    """Base class of every error meant for the user rather than a bug report."""


class ConfigError(LoopmlError):
    """`loopml.yaml` (or a `LOOPML_*` override) is missing, malformed or invalid."""


class DataError(LoopmlError):
    """The dataset is missing, unreadable, empty, or fails validation."""


class ModelError(LoopmlError):
    """The model factory or estimator cannot be found, built or trained."""


class ModelInputError(LoopmlError):
    """Rows given to a model do not fit it (missing columns, wrong types, values it cannot take)."""


class GateFailed(LoopmlError):
    """The candidate model failed one or more evaluation gates; it was logged, not registered."""


class RegistryError(LoopmlError):
    """The model registry refused an operation (unknown version, no champion, ...)."""


class NotFound(RegistryError):
    """The registry answered: no such model, version, alias or run."""


class RegistryUnavailable(RegistryError):
    """The registry did not answer, answered with an error, or its store is damaged."""


class PipelineError(LoopmlError):
    """`dvc repro` failed or the stage graph is broken."""
