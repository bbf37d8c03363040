"""EvidentlyDetectDriftOperator: Evidently drift check of a registered model's data, retraining events by policy.

The check itself (version lookup, lineage, signature, the MLflow history run, the policy step) is
:func:`airflow_mlops.core.model_drift.check_model_drift`; the operator adds the report link and the asset event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_mlops.assets import drift_asset, drift_asset_alias
from airflow_mlops.core.drift import DEFAULT_DRIFT_SHARE, DEFAULT_SEED
from airflow_mlops.core.policy import RetrainingPolicy
from airflow_mlops.core.storage import safe_segment
from airflow_mlops.exceptions import MlopsConfigError
from airflow_mlops.links.drift import DriftReportLink
from airflow_mlops.operators.base import MlflowBaseOperator
from airflow_mlops.operators.common import (
    emitted_before,
    fail_fast,
    identity_from_context,
)
from airflow_mlops.operators.openlineage import OpenLineageMixin

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow.sdk.definitions.context import Context

    from airflow_mlops.core.drift import DriftResult
    from airflow_mlops.core.openlineage import LineageSpec


class EvidentlyDetectDriftOperator(OpenLineageMixin, MlflowBaseOperator):
    """
    Check a registered model's current data for drift with Evidently and emit a retraining event by policy.

    The reference data defaults to the dataset the model version was trained on (its ``mlops.data.uri``
    tag, else its training run's); the compared columns default to the model signature's inputs. The drift
    share is logged as an MLflow metric against the model version (run in the training experiment, linked to
    the logged model), the HTML/JSON reports go to ``report_uri``, and when the drift is confirmed by the
    :class:`~airflow_mlops.core.policy.RetrainingPolicy` (state kept on the registered model in MLflow) an
    event is added to ``drift_asset(model_name)``. A retried check (same task instance) replays its recorded
    decision: it never advances the policy twice and never emits twice.

    Returns (XCom) a small dict: ``model_name, model_version, drift_detected, drift_share, share_threshold,
    drifted_columns, n_columns, prediction_drift, confirmed, emitted, policy_reason, consecutive, replayed,
    report_uri, report_json_uri, reference_uri, current_uri, reference_fingerprint, current_fingerprint,
    reference_rows, current_rows, sampled, mlflow_run_id, check_key, elapsed_s``.

    .. code-block:: python

        check = EvidentlyDetectDriftOperator(
            task_id="drift",
            model_name="churn",
            current_uri="s3://lake/churn/{{ dag_run.run_after | ds }}.parquet",
            policy={"persistence": 2, "cooldown": "1d", "max_retrains": 3, "window": "7d"},
        )
        # elsewhere: DAG("churn_retrain", schedule=[drift_asset("churn")], ...)

    :param model_name: Registered model name (templated).
    :param current_uri: The new data to check (templated).
    :param model_version: Version to check (templated); default: the version behind ``model_alias``.
    :param model_alias: Alias to resolve when no version is given (templated); default: ``[mlops]
        champion_alias``.
    :param reference_uri: Reference data (templated); default: the model version's training dataset tag.
    :param report_uri: Folder for ``drift.html``/``drift.json``/``result.json`` (templated); default:
        ``<report_base_uri>/drift/<model>/<dag_id>/<run_id>/<task_id>``.
    :param columns: Input columns to compare (templated); default: the model signature's inputs, else the
        columns both datasets share.
    :param categorical_columns: Columns compared as categories even when numeric (templated).
    :param prediction_column: Column whose drift is reported as prediction drift (templated).
    :param reference_predictions_uri: Predictions row-aligned with the reference data (templated).
    :param current_predictions_uri: Predictions row-aligned with the current data (templated).
    :param drift_share: Dataset drift when this share of columns drifted or more (default 0.5).
    :param stattest: Evidently test for every column (default: Evidently's choice on the full data).
    :param stattest_threshold: Threshold of that test (default: the test's own).
    :param sample_size: Rows sampled per side (seeded); default ``[mlops] drift_sample_size``; 0 = all rows.
    :param seed: Sampling seed (the same data and seed give identical scores).
    :param policy: RetrainingPolicy, a dict or JSON with persistence / cooldown / max_retrains / window.
    :param emit_events: Set False to record the check and the policy state but never emit an event.
    :param mlflow_conn_id: MLflow connection (templated); default ``[mlops] mlflow_conn_id``.
    """

    template_fields: Sequence[str] = (
        "model_name",
        "model_version",
        "model_alias",
        "current_uri",
        "reference_uri",
        "report_uri",
        "columns",
        "categorical_columns",
        "prediction_column",
        "reference_predictions_uri",
        "current_predictions_uri",
        "mlflow_conn_id",
    )
    operator_extra_links = (DriftReportLink(),)
    ui_color = "#f4d3b8"

    def __init__(
        self,
        *,
        model_name: str,
        current_uri: str,
        model_version: str | int | None = None,
        model_alias: str | None = None,
        reference_uri: str | None = None,
        report_uri: str | None = None,
        columns: Sequence[str] | None = None,
        categorical_columns: Sequence[str] | None = None,
        prediction_column: str | None = None,
        reference_predictions_uri: str | None = None,
        current_predictions_uri: str | None = None,
        drift_share: float = DEFAULT_DRIFT_SHARE,
        stattest: str | None = None,
        stattest_threshold: float | None = None,
        sample_size: int | None = None,
        seed: int = DEFAULT_SEED,
        policy: RetrainingPolicy | Mapping[str, Any] | str | None = None,
        emit_events: bool = True,
        mlflow_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        alias = drift_asset_alias()
        outlets = list(kwargs.pop("outlets", None) or [])
        inlets = list(kwargs.pop("inlets", None) or [])
        if emit_events:
            outlets = [*outlets, alias] if alias not in outlets else outlets
            inlets = [*inlets, alias] if alias not in inlets else inlets  # read back past events (dedupe)
        super().__init__(outlets=outlets, inlets=inlets, mlflow_conn_id=mlflow_conn_id, **kwargs)
        if not 0 < float(drift_share) <= 1:
            raise MlopsConfigError(
                f"drift_share={drift_share!r} must be in (0, 1]; 0.5 means half the columns."
            )
        if sample_size is not None and (isinstance(sample_size, bool) or int(sample_size) < 0):
            raise MlopsConfigError(f"sample_size={sample_size!r} must be >= 0 (0 reads every row).")
        self.model_name = model_name
        self.current_uri = current_uri
        self.model_version = None if model_version is None else str(model_version)
        self.model_alias = model_alias
        self.reference_uri = reference_uri
        self.report_uri = report_uri
        self.columns = list(columns) if columns is not None else None
        self.categorical_columns = list(categorical_columns or [])
        self.prediction_column = prediction_column
        self.reference_predictions_uri = reference_predictions_uri
        self.current_predictions_uri = current_predictions_uri
        self.drift_share = float(drift_share)
        self.stattest = stattest
        self.stattest_threshold = stattest_threshold
        self.sample_size = sample_size
        self.seed = int(seed)
        self.policy = RetrainingPolicy.from_obj(policy)
        self.emit_events = emit_events

    # ------------------------------------------------------------------------------------------ execute
    @fail_fast
    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.core.model_drift import check_model_drift
        from airflow_mlops.core.storage import join_uri
        from airflow_mlops.links.base import push_link, report_view_url
        from airflow_mlops.settings import get_settings

        settings = get_settings()
        identity = identity_from_context(context)
        name = str(self.model_name or "").strip()
        report_uri = self.report_uri or join_uri(
            settings.report_base_uri,
            "drift",
            safe_segment(name or "_"),
            safe_segment(identity.dag_id),  # run ids repeat across DAGs: one folder per DAG run
            safe_segment(identity.run_id),
            safe_segment(
                identity.task_id if identity.map_index < 0 else f"{identity.task_id}.{identity.map_index}"
            ),
        )
        with self.mlflow_hook.session() as client:
            checked = check_model_drift(
                client,
                name,
                self.current_uri,
                identity=identity,
                report_uri=report_uri,
                policy=self.policy,
                model_version=self.model_version,
                model_alias=self.model_alias or settings.champion_alias,
                reference_uri=self.reference_uri or None,
                columns=self.columns,
                log=self.log,
                categorical_columns=self.categorical_columns,
                prediction_column=self.prediction_column or None,
                reference_predictions_uri=self.reference_predictions_uri or None,
                current_predictions_uri=self.current_predictions_uri or None,
                drift_share=self.drift_share,
                stattest=self.stattest,
                stattest_threshold=self.stattest_threshold,
                sample_size=settings.drift_sample_size if self.sample_size is None else int(self.sample_size),
                seed=self.seed,
            )
        result, decision = checked.drift, checked.decision
        push_link(context, DriftReportLink, report_view_url(result.html_uri))
        summary = checked.to_summary()
        self._mlops_summary = summary
        if decision.replayed:
            self.log.info(
                "Check %s was already recorded by an earlier try: replaying its decision", identity.ti_key
            )
        if decision.emit and self.emit_events:
            if decision.replayed and emitted_before(
                context, drift_asset_alias(), "check_key", identity.ti_key, self.log
            ):
                self.log.info(
                    "The drift event of check %s was already emitted; not emitting again", identity.ti_key
                )
            else:
                self._emit(context, name, checked.model_version, result, summary)
                summary["emitted"] = True
        self.log.info(
            "Drift share %.3f, drifted %s, confirmed=%s, emitted=%s (%s)",
            result.drift_share, result.drifted_columns, decision.confirmed, summary["emitted"], decision.reason,
        )  # fmt: skip
        return summary

    def lineage_spec(self, summary: dict[str, Any]) -> LineageSpec:
        """Reference and current data and the model in (its drift share in the facet), the reports out."""
        from airflow_mlops.core.openlineage import drift_lineage

        if not summary:
            summary = {"current_uri": self.current_uri, "model_name": self.model_name}
        return drift_lineage(summary, self._tracking_uri())

    def _emit(
        self, context: Context, name: str, version: str, result: DriftResult, summary: Mapping[str, Any]
    ) -> None:
        extra: dict[str, Any] = {
            "model_name": name,
            "model_version": version,
            "drift_share": round(float(result.drift_share), 6),
            "drifted_columns": result.drifted_columns[:200],
            "report_uri": result.html_uri,
            "report_json_uri": result.json_uri,
            "reference_uri": result.reference_uri,
            "current_uri": result.current_uri,
            "reference_fingerprint": result.reference_fingerprint,
            "current_fingerprint": result.current_fingerprint,
            "prediction_drift": summary.get("prediction_drift"),
            "mlflow_run_id": summary.get("mlflow_run_id"),
            "check_key": summary.get("check_key"),
            "policy_reason": summary.get("policy_reason"),
        }
        context["outlet_events"][drift_asset_alias()].add(drift_asset(name), extra=extra)
        self.log.info("Emitted a drift event on %s for %s v%s", drift_asset(name).name, name, version)
