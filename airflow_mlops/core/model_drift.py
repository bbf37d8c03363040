"""The drift check of a registered model version: what the drift operator does, without Airflow.

:func:`check_model_drift` resolves the model version (the registry's lookups: one "not found" message), finds
the reference data from the version's lineage and the compared columns from its signature, runs
:func:`airflow_mlops.core.drift.detect_drift`, records who wrote the reports (the authenticated viewer serves
them to that DAG's readers only), logs the drift share against the model version in one MLflow run per check
(reused on retries), and applies the :class:`~airflow_mlops.core.policy.RetrainingPolicy` whose state lives on
the registered model. It returns one :class:`ModelDriftResult`; the operator adds the Airflow parts (link,
asset event).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_mlops.core.tags import (
    TAG_DATASET_FINGERPRINT,
    TAG_DATASET_URI,
    TAG_DRIFT_COLUMNS,
    TAG_DRIFT_CURRENT_FINGERPRINT,
    TAG_DRIFT_CURRENT_URI,
    TAG_DRIFT_DECISION,
    TAG_DRIFT_LAST,
    TAG_DRIFT_MODEL,
    TAG_DRIFT_REFERENCE_FINGERPRINT,
    TAG_DRIFT_REFERENCE_URI,
    TAG_DRIFT_REPORT_URI,
    TAG_DRIFT_THRESHOLD,
    TAG_DRIFT_VERSION,
    TAG_TI_KEY,
)
from airflow_mlops.exceptions import DriftDetectionError, MlopsConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from airflow_mlops.core.drift import DriftResult
    from airflow_mlops.core.lineage import AirflowIdentity
    from airflow_mlops.core.policy import PolicyDecision, RetrainingPolicy

DRIFT_EXPERIMENT = "mlops-drift"
METRIC_DRIFT_SHARE = "drift_share"
METRIC_DRIFTED_COLUMNS = "drifted_columns"
_MAX_COLUMNS_TAG = 7000

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelDriftResult:
    """One drift check of one model version: the drift found, the MLflow run it was logged to, the policy step."""

    model_name: str
    model_version: str
    drift: DriftResult
    decision: PolicyDecision
    mlflow_run_id: str
    check_key: str

    def to_summary(self) -> dict[str, Any]:
        """The small XCom dict of the drift operator (``emitted`` is the operator's to set)."""
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            **self.drift.to_summary(),
            "confirmed": self.decision.confirmed,
            "emitted": False,
            "policy_reason": self.decision.reason,
            "consecutive": self.decision.consecutive,
            "replayed": self.decision.replayed,
            "mlflow_run_id": self.mlflow_run_id,
            "check_key": self.check_key,
        }


def check_model_drift(
    client: MlflowClient,
    name: str,
    current_uri: str,
    *,
    identity: AirflowIdentity,
    report_uri: str,
    policy: RetrainingPolicy,
    model_version: str | None = None,
    model_alias: str = "champion",
    reference_uri: str | None = None,
    columns: Sequence[str] | None = None,
    log: logging.Logger | Any = None,
    **detect_options: Any,
) -> ModelDriftResult:
    """
    Check ``current_uri`` for drift against the training data of model ``name`` and apply ``policy``.

    The version is ``model_version`` when given, else the one ``model_alias`` points to. ``reference_uri``
    defaults to the version's recorded training dataset and ``columns`` to its signature's inputs;
    ``detect_options`` go to :func:`~airflow_mlops.core.drift.detect_drift` (``drift_share``, ``stattest``,
    ``sample_size``...). Retry-safe: the check's key is ``identity.ti_key``, so a retry reuses its MLflow run
    and the policy replays the decision it recorded.
    """
    from airflow_mlops.core.drift import detect_drift
    from airflow_mlops.core.policy import DriftCheck, MlflowPolicyStore
    from airflow_mlops.core.report_owner import split_uri, write_owner

    log = log or logger
    if not name or not str(name).strip():
        raise MlopsConfigError("model_name rendered empty; give the registered model name.")
    name = str(name).strip()
    mv = resolve_model_version(client, name, model_version, model_alias)
    reference_uri = reference_uri or reference_from_lineage(client, mv, log=log)
    columns = list(columns) if columns else signature_columns(mv, log=log)
    log.info(
        "::group::Drift check of %s v%s: %s vs reference %s", name, mv.version, current_uri, reference_uri
    )
    result = detect_drift(
        reference_uri,
        current_uri,
        report_uri=report_uri,
        columns=columns,
        report_metadata={"model_name": name, "model_version": mv.version, "check_key": identity.ti_key},
        **detect_options,
    )
    log.info("::endgroup::")
    # The report viewer serves the files to readers of this DAG only; Evidently's HTML needs its scripts.
    write_owner(
        identity,
        [result.html_uri, result.json_uri, result.result_uri],
        scripts=[split_uri(result.html_uri)[1]],
    )
    recorded = (mv.tags or {}).get(TAG_DATASET_FINGERPRINT)
    if recorded and result.reference_fingerprint and not same_reference(recorded, result):
        log.warning(
            "Reference data %s changed since model %s v%s was trained (fingerprint %s, trained on %s)",
            reference_uri, name, mv.version, result.reference_fingerprint, recorded,
        )  # fmt: skip
    run_id = log_drift_history(client, name, mv, result, identity)
    check = DriftCheck(
        key=identity.ti_key,
        version=str(mv.version),
        drifted=result.drift_detected,
        share=result.drift_share,
        report_uri=result.html_uri,
        extra={"current_uri": result.current_uri, "mlflow_run_id": run_id},
    )
    _, decision = MlflowPolicyStore(client, name).apply(policy, check)
    # The Models view marks the retraining events on the drift trend from this tag (the policy state keeps only
    # the newest checks); a retry replays the same decision, so it writes the same value.
    decision_tag = {
        "drifted": result.drift_detected,
        "emit": decision.emit,
        "confirmed": decision.confirmed,
        "reason": decision.reason,
    }
    client.set_tag(run_id, TAG_DRIFT_DECISION, json.dumps(decision_tag, sort_keys=True))
    return ModelDriftResult(name, str(mv.version), result, decision, run_id, identity.ti_key)


def resolve_model_version(client: MlflowClient, name: str, version: str | None, alias: str) -> ModelVersion:
    """The checked version: ``version`` when given, else ``alias``'s; ModelNotFound lists what exists."""
    from airflow_mlops.core.registry import check_version, get_model_version, require_alias_version

    wanted = str(version).strip() if version else None
    number = (
        check_version(wanted, what="model_version") if wanted else require_alias_version(client, name, alias)
    )
    mv: ModelVersion = get_model_version(client, name, number)
    return mv


def reference_from_lineage(
    client: MlflowClient, mv: ModelVersion, *, log: logging.Logger | Any = None
) -> str:
    """The dataset ``mv`` was trained on (tag on the version, else on its training run)."""
    uri = (mv.tags or {}).get(TAG_DATASET_URI)
    if not uri and mv.run_id:
        try:
            uri = client.get_run(mv.run_id).data.tags.get(TAG_DATASET_URI)
        except Exception as err:  # noqa: BLE001 - the run may have been deleted; the error below says what to do
            (log or logger).warning(
                "Could not read training run %s of %s v%s: %s", mv.run_id, mv.name, mv.version, err
            )
    if not uri:
        raise DriftDetectionError(
            f"model {mv.name!r} v{mv.version} records no training dataset (tag {TAG_DATASET_URI!r} on the "
            f"version or its run {mv.run_id}); pass reference_uri= with the data it was trained on."
        )
    return str(uri)


def signature_columns(mv: ModelVersion, *, log: logging.Logger | Any = None) -> list[str] | None:
    """The input column names of ``mv``'s signature; None (compare the shared columns) when it has none."""
    try:
        from mlflow.models import get_model_info

        signature = get_model_info(f"models:/{mv.name}/{mv.version}").signature
        names = signature.inputs.input_names() if signature is not None and signature.inputs else None
    except Exception as err:  # noqa: BLE001 - no signature / not a model format we know: compare shared columns
        (log or logger).info(
            "No usable signature on %s v%s (%s); comparing shared columns", mv.name, mv.version, err
        )
        return None
    names = [n for n in (names or []) if isinstance(n, str)]
    return names or None


def same_reference(recorded_fp: str, result: DriftResult) -> bool:
    """Whether the reference is the model's training data (recomputed in the recorded fingerprint's algorithm)."""
    from airflow_mlops.core.lineage import algorithm_of, same_content

    if recorded_fp == result.reference_fingerprint:
        return True
    if algorithm_of(recorded_fp) in (None, algorithm_of(result.reference_fingerprint)):
        return False
    return same_content(recorded_fp, result.reference_uri)


def _history_experiment(client: MlflowClient, mv: ModelVersion) -> str:
    """The training run's experiment (the drift shows beside training), else ``mlops-drift``."""
    if mv.run_id:
        try:
            return str(client.get_run(mv.run_id).info.experiment_id)
        except Exception:  # noqa: BLE001 - the training run may be gone: fall back to the drift experiment
            pass
    experiment = client.get_experiment_by_name(DRIFT_EXPERIMENT)
    return str(experiment.experiment_id if experiment else client.create_experiment(DRIFT_EXPERIMENT))


def log_drift_history(
    client: MlflowClient, name: str, mv: ModelVersion, result: DriftResult, identity: AirflowIdentity
) -> str:
    """Log the drift share against the model version in one MLflow run per check (reused on retries)."""
    experiment_id = _history_experiment(client, mv)
    existing = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_TI_KEY}` = '{identity.ti_key}' and tags.`{TAG_DRIFT_MODEL}` = '{name}'",
        max_results=1,
    )
    tags: Mapping[str, str] = {
        **identity.to_tags(),
        TAG_DRIFT_MODEL: name,
        TAG_DRIFT_VERSION: str(mv.version),
        TAG_DRIFT_REPORT_URI: result.html_uri,
        TAG_DRIFT_REFERENCE_URI: result.reference_uri,
        TAG_DRIFT_CURRENT_URI: result.current_uri,
        TAG_DRIFT_REFERENCE_FINGERPRINT: result.reference_fingerprint or "",
        TAG_DRIFT_CURRENT_FINGERPRINT: result.current_fingerprint or "",
        TAG_DRIFT_COLUMNS: json.dumps(result.drifted_columns)[:_MAX_COLUMNS_TAG],
        TAG_DRIFT_THRESHOLD: repr(float(result.share_threshold)),
    }
    if existing:
        run_id = str(existing[0].info.run_id)
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
    else:
        run_id = client.create_run(
            experiment_id, tags=dict(tags), run_name=f"drift-{name}-v{mv.version}"
        ).info.run_id
    model_id = getattr(mv, "model_id", None)
    now_ms = int(time.time() * 1000)
    metrics = {METRIC_DRIFT_SHARE: result.drift_share, METRIC_DRIFTED_COLUMNS: len(result.drifted_columns)}
    for metric, number in metrics.items():
        client.log_metric(run_id, metric, float(number), timestamp=now_ms, model_id=model_id)
    client.set_terminated(run_id)
    last = {
        "at": round(time.time(), 3),
        "drift_share": round(result.drift_share, 6),
        "drift_detected": result.drift_detected,
        "report_uri": result.html_uri,
        "run_id": run_id,
    }
    client.set_model_version_tag(name, str(mv.version), TAG_DRIFT_LAST, json.dumps(last))
    return run_id
