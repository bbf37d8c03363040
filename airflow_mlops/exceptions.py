"""The one exception hierarchy of airflow-mlops.

Every error the provider raises on purpose derives from :class:`MlopsError`, so a DAG author can catch them all
in one place. Messages say what was wrong, where, and what to do; they are plain strings, never logging-style
``%s`` templates.

Each class says whether a retry can fix it (``retryable``). Bad specs, bad data, schema mismatches, failed
suites, gate rejections and config errors cannot: the operators turn them into ``AirflowFailException`` so
Airflow does not spend its retries (or start more GPU pods) on them. Unreachable services and training
processes or pods that died (evicted, preempted, OOM on a spot node) can, and keep Airflow's normal retries.
The decision lives here, as data, so ``core/`` stays free of Airflow.
"""

from __future__ import annotations

from typing import ClassVar


class MlopsError(Exception):
    """Base class of every error raised on purpose by airflow-mlops."""

    retryable: ClassVar[bool] = False


class MlopsConfigError(MlopsError, ValueError):
    """A configuration value (operator argument, template config, [mlops] option) is invalid."""


class ConnectionConfigError(MlopsConfigError):
    """An Airflow connection is missing or malformed."""


class ServiceUnreachable(MlopsError):
    """A remote service (MLflow tracking server, Kubernetes API, object store) did not answer."""

    retryable: ClassVar[bool] = True


class DatasetError(MlopsError):
    """A dataset could not be read or used: missing, corrupt, malformed (duplicate columns), empty, or bad values."""


class DatasetNotFound(DatasetError, FileNotFoundError):
    """A dataset URI points at nothing."""


class EmptyDatasetError(DatasetError):
    """A dataset exists but holds no rows."""


class UnsafeUriError(MlopsConfigError):
    """A URI tries to escape its base location (for example with ``..``)."""


class SchemaMismatch(MlopsError):
    """Data columns or types do not match what a suite, spec or model signature needs."""


class DataValidationFailed(MlopsError):
    """A Great Expectations suite failed on a dataset."""


class SuiteError(MlopsConfigError):
    """An expectation suite is malformed (bad JSON, unknown expectation type, bad kwargs)."""


class TrainingSpecError(MlopsConfigError):
    """A training spec is invalid (unknown estimator, bad hyperparameter, missing target)."""


class TrainingFailed(MlopsError):
    """The training process or pod ended without producing an MLflow run with a model."""

    retryable: ClassVar[bool] = True


class ModelRegistryError(MlopsError):
    """A registry operation (register, alias move, lookup) failed."""

    retryable: ClassVar[bool] = True


class ModelNotFound(ModelRegistryError, LookupError):
    """A registered model, version, alias or logged model does not exist."""

    retryable: ClassVar[bool] = False


class ModelGateRejected(ModelRegistryError):
    """A candidate model did not pass the champion/challenger gate."""

    retryable: ClassVar[bool] = False


class GateRuleError(MlopsConfigError):
    """A gate rule is malformed or names a metric the run does not have."""


class ScoringError(MlopsError):
    """Batch inference could not complete."""


class SparkJobFailed(ScoringError):
    """A Spark scoring job died or left no committed output (a lost driver, executor or cluster): retried."""

    retryable: ClassVar[bool] = True


class DriftDetectionError(MlopsError):
    """Drift detection could not compare the reference and current data."""


class TemplateConfigError(MlopsConfigError):
    """A lifecycle template config (dataclass or YAML file) is invalid."""


def first_line(err: BaseException) -> str:
    """The first line of ``err``'s message (at most 300 characters), or its type name when it has none.

    What error messages quote of a library's exception: enough to recognise it, never a whole traceback.
    """
    lines = str(err).strip().splitlines()
    return (lines[0] if lines else type(err).__name__)[:300]
