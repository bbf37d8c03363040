"""Find the MLflow run a training process or pod produced, by the Airflow task identity it was tagged with.

Training hands its result back through MLflow, never through stdout: the entrypoint tags its run with the task
instance identity, and after the process or pod ends the operator calls :func:`find_training_run`. Never
imports Airflow; the MLflow client is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_mlops.core.tags import (
    TAG_DATASET_FINGERPRINT,
    TAG_DATASET_URI,
    TAG_MODEL_URI,
    TAG_TI_KEY,
    TAG_TRY_NUMBER,
)
from airflow_mlops.exceptions import TrainingFailed

if TYPE_CHECKING:
    from airflow_mlops.core.lineage import AirflowIdentity

VAL_PREFIX = "val_"

# The entrypoint's side of the contract (``python -m airflow_mlops.training``).
IDENTITY_ENV = "MLOPS_AIRFLOW_IDENTITY"  # JSON of AirflowIdentity.to_dict()
ENTRYPOINT_MODULE = "airflow_mlops.training"
EXIT_BAD_INPUT = 2  # bad spec or data: a retry cannot help
EXIT_FAILED = 1
ERROR_MARKER = "MLOPS_TRAINING_ERROR"  # first word of the entrypoint's last stderr line on failure
RESULT_MARKER = "MLOPS_TRAINING_RESULT"  # first word of its last stdout line on success (informational)


@dataclass(frozen=True)
class TrainingResult:
    """What a finished training run produced (small: ids, URIs and the final validation metrics)."""

    run_id: str
    experiment_id: str
    model_uri: str
    metrics: dict[str, float] = field(default_factory=dict)
    dataset_uri: str | None = None
    dataset_fingerprint: str | None = None

    def run_url(self, ui_url: str | None) -> str | None:
        """Browser URL of the run in the MLflow UI (None without a UI URL)."""
        if not ui_url:
            return None
        return f"{ui_url.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"

    def to_summary(self, ui_url: str | None = None) -> dict[str, Any]:
        """The dict training operators return: run_id, experiment_id, model_uri, metrics, dataset_*, run_url."""
        return {
            "run_id": self.run_id,
            "experiment_id": self.experiment_id,
            "model_uri": self.model_uri,
            "metrics": dict(self.metrics),
            "dataset_uri": self.dataset_uri,
            "dataset_fingerprint": self.dataset_fingerprint,
            "run_url": self.run_url(ui_url),
        }

    to_xcom = to_summary  # the name before 0.2: kept for callers' code


def entrypoint_args(spec_json: str) -> list[str]:
    """Arguments after the interpreter: ``-m airflow_mlops.training --spec <json>``."""
    return ["-m", ENTRYPOINT_MODULE, "--spec", spec_json]


def error_from_lines(lines: list[str]) -> str | None:
    """The message of the entrypoint's ``MLOPS_TRAINING_ERROR`` line among ``lines`` (last one wins)."""
    for line in reversed(lines):
        _, marker, rest = line.partition(ERROR_MARKER)
        if marker:
            return rest.strip()
    return None


def _quote(value: str) -> str:
    quote = "'" if "'" not in value else '"'
    return f"{quote}{value}{quote}"


def identity_filter(identity: AirflowIdentity, *, with_try: bool = True) -> str:
    """MLflow search filter matching runs tagged with this task instance (and try)."""
    parts = [f"tags.`{TAG_TI_KEY}` = {_quote(identity.ti_key)}"]
    if with_try:
        parts.append(f"tags.`{TAG_TRY_NUMBER}` = {_quote(str(identity.try_number))}")
    return " and ".join(parts)


def model_uri_of(run: Any) -> str | None:
    """The model the run logged: the trainer's tag, else the run's first logged-model output."""
    tags = run.data.tags
    if tags.get(TAG_MODEL_URI):
        return str(tags[TAG_MODEL_URI])
    outputs = getattr(run, "outputs", None)
    model_outputs = getattr(outputs, "model_outputs", None) or []
    for output in model_outputs:
        model_id = getattr(output, "model_id", None)
        if model_id:
            return f"models:/{model_id}"
    return None


def result_from_run(run: Any, model_uri: str) -> TrainingResult:
    metrics = {k: float(v) for k, v in run.data.metrics.items() if k.startswith(VAL_PREFIX)}
    return TrainingResult(
        run_id=run.info.run_id,
        experiment_id=str(run.info.experiment_id),
        model_uri=model_uri,
        metrics=dict(sorted(metrics.items())),
        dataset_uri=run.data.tags.get(TAG_DATASET_URI),
        dataset_fingerprint=run.data.tags.get(TAG_DATASET_FINGERPRINT),
    )


def find_training_run(client: Any, *, experiment_name: str, identity: AirflowIdentity) -> TrainingResult:
    """
    The newest FINISHED run of ``experiment_name`` with a model, tagged with ``identity`` (ti_key + try).

    Raises TrainingFailed naming the experiment and the task instance, with what was found instead (no run,
    a run that failed or is still running, a run without a model).
    """
    where = f"task {identity.ti_key} try {identity.try_number}"
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        raise TrainingFailed(
            f"training for {where} left no MLflow experiment {experiment_name!r}: the training process ended "
            "before it reached MLflow. Read the task log above for its error."
        )
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=identity_filter(identity),
        order_by=["attributes.start_time DESC"],
        max_results=20,
    )
    if not runs:
        raise TrainingFailed(
            f"no MLflow run in experiment {experiment_name!r} is tagged with {where}: the training process "
            "ended before it started its run. Read the task log above for its error."
        )
    seen = []
    for run in runs:
        status = run.info.status
        model_uri = model_uri_of(run)
        if status == "FINISHED" and model_uri:
            return result_from_run(run, model_uri)
        seen.append(f"{run.info.run_id} ({status}{'' if model_uri else ', no model'})")
    raise TrainingFailed(
        f"MLflow run(s) {', '.join(seen)} of experiment {experiment_name!r} for {where} did not finish with a "
        "model. Read the task log above for the training error; retrying resumes from the last checkpoint."
    )
