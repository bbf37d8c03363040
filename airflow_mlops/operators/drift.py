"""EvidentlyDetectDriftOperator: Evidently drift check of a registered model's data, retraining events by policy."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_mlops.assets import drift_asset, drift_asset_alias
from airflow_mlops.core.drift import DEFAULT_DRIFT_SHARE, DEFAULT_SEED
from airflow_mlops.core.policy import RetrainingPolicy
from airflow_mlops.core.storage import safe_segment
from airflow_mlops.core.tags import (
    TAG_DATASET_FINGERPRINT,
    TAG_DATASET_URI,
    TAG_DRIFT_COLUMNS,
    TAG_DRIFT_CURRENT_FINGERPRINT,
    TAG_DRIFT_CURRENT_URI,
    TAG_DRIFT_LAST,
    TAG_DRIFT_MODEL,
    TAG_DRIFT_REFERENCE_FINGERPRINT,
    TAG_DRIFT_REFERENCE_URI,
    TAG_DRIFT_REPORT_URI,
    TAG_DRIFT_VERSION,
    TAG_TI_KEY,
)
from airflow_mlops.exceptions import DriftDetectionError, MlopsConfigError, ModelNotFound
from airflow_mlops.links.drift import DriftReportLink
from airflow_mlops.operators.common import (
    emitted_before,
    fail_fast,
    identity_from_context,
    resolve_mlflow_conn_id,
)

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from airflow_mlops.core.drift import DriftResult
    from airflow_mlops.core.lineage import AirflowIdentity

DRIFT_EXPERIMENT = "mlops-drift"
METRIC_DRIFT_SHARE = "drift_share"
METRIC_DRIFTED_COLUMNS = "drifted_columns"


class EvidentlyDetectDriftOperator(BaseOperator):
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
        super().__init__(outlets=outlets, inlets=inlets, **kwargs)
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
        self.mlflow_conn_id = mlflow_conn_id

    # ------------------------------------------------------------------------------------------ execute
    @fail_fast
    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.core.drift import detect_drift
        from airflow_mlops.core.policy import DriftCheck, MlflowPolicyStore
        from airflow_mlops.core.report_owner import split_uri, write_owner
        from airflow_mlops.core.storage import join_uri
        from airflow_mlops.hooks.mlflow import MlflowHook
        from airflow_mlops.links.base import push_link, report_view_url
        from airflow_mlops.settings import get_settings

        settings = get_settings()
        identity = identity_from_context(context)
        if not self.model_name or not str(self.model_name).strip():
            raise MlopsConfigError("model_name rendered empty; give the registered model name.")
        name = str(self.model_name).strip()
        hook = MlflowHook(resolve_mlflow_conn_id(self.mlflow_conn_id))
        with hook.session() as client:
            mv = self._model_version(client, name, settings.champion_alias)
            reference_uri = self.reference_uri or self._reference_from_lineage(client, mv)
            columns = self.columns or self._signature_columns(mv)
            report_uri = self.report_uri or join_uri(
                settings.report_base_uri,
                "drift",
                safe_segment(name),
                safe_segment(identity.dag_id),  # run ids repeat across DAGs: one folder per DAG run
                safe_segment(identity.run_id),
                safe_segment(
                    identity.task_id if identity.map_index < 0 else f"{identity.task_id}.{identity.map_index}"
                ),
            )
            self.log.info(
                "::group::Drift check of %s v%s: %s vs reference %s",
                name,
                mv.version,
                self.current_uri,
                reference_uri,
            )
            result = detect_drift(
                reference_uri,
                self.current_uri,
                report_uri=report_uri,
                columns=columns,
                categorical_columns=self.categorical_columns,
                prediction_column=self.prediction_column or None,
                reference_predictions_uri=self.reference_predictions_uri or None,
                current_predictions_uri=self.current_predictions_uri or None,
                drift_share=self.drift_share,
                stattest=self.stattest,
                stattest_threshold=self.stattest_threshold,
                sample_size=settings.drift_sample_size if self.sample_size is None else int(self.sample_size),
                seed=self.seed,
                report_metadata={
                    "model_name": name,
                    "model_version": mv.version,
                    "check_key": identity.ti_key,
                },
            )
            self.log.info("::endgroup::")
            # The report viewer serves the files to readers of this DAG only; Evidently's HTML needs its scripts.
            write_owner(
                identity,
                [result.html_uri, result.json_uri, result.result_uri],
                scripts=[split_uri(result.html_uri)[1]],
            )
            recorded_fp = (mv.tags or {}).get(TAG_DATASET_FINGERPRINT)
            if recorded_fp and result.reference_fingerprint and not self._same_reference(recorded_fp, result):
                self.log.warning(
                    "Reference data %s changed since model %s v%s was trained (fingerprint %s, trained on %s)",
                    reference_uri, name, mv.version, result.reference_fingerprint, recorded_fp,
                )  # fmt: skip
            run_id = self._log_history(client, name, mv, result, identity)
            store = MlflowPolicyStore(client, name)
            check = DriftCheck(
                key=identity.ti_key,
                version=str(mv.version),
                drifted=result.drift_detected,
                share=result.drift_share,
                report_uri=result.html_uri,
                extra={"current_uri": result.current_uri, "mlflow_run_id": run_id},
            )
            state, decision = store.apply(self.policy, check)
        push_link(context, DriftReportLink, report_view_url(result.html_uri))

        summary: dict[str, Any] = {
            "model_name": name,
            "model_version": str(mv.version),
            **result.summary(),
            "confirmed": decision.confirmed,
            "emitted": False,
            "policy_reason": decision.reason,
            "consecutive": decision.consecutive,
            "replayed": decision.replayed,
            "mlflow_run_id": run_id,
            "check_key": identity.ti_key,
        }
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
                self._emit(context, name, str(mv.version), result, summary)
                summary["emitted"] = True
        self.log.info(
            "Drift share %.3f, drifted %s, confirmed=%s, emitted=%s (%s)",
            result.drift_share, result.drifted_columns, decision.confirmed, summary["emitted"], decision.reason,
        )  # fmt: skip
        return summary

    # ------------------------------------------------------------------------------------------ helpers
    def _model_version(self, client: MlflowClient, name: str, default_alias: str) -> ModelVersion:
        from mlflow.exceptions import MlflowException

        from airflow_mlops.core.scoring import resolve_model

        # The same resolution as batch inference: ModelNotFound lists similar model names, the model's
        # aliases or its versions.
        version = str(self.model_version).strip() if self.model_version else None
        ref = resolve_model(
            client,
            f"models:/{name}/{version}" if version else f"models:/{name}@{self.model_alias or default_alias}",
        )
        try:
            return client.get_model_version(name, ref.version)
        except MlflowException as err:
            what = (
                f"version {self.model_version}"
                if self.model_version
                else f"alias {self.model_alias or default_alias!r}"
            )
            raise ModelNotFound(
                f"registered model {name!r} has no {what} ({err.error_code}); register the model and set the "
                "alias, or pass model_version=."
            ) from None

    def _reference_from_lineage(self, client: MlflowClient, mv: ModelVersion) -> str:
        uri = (mv.tags or {}).get(TAG_DATASET_URI)
        if not uri and mv.run_id:
            try:
                uri = client.get_run(mv.run_id).data.tags.get(TAG_DATASET_URI)
            except Exception as err:  # the run may have been deleted; the error below says what to do
                self.log.warning(
                    "Could not read training run %s of %s v%s: %s", mv.run_id, mv.name, mv.version, err
                )
        if not uri:
            raise DriftDetectionError(
                f"model {mv.name!r} v{mv.version} records no training dataset (tag {TAG_DATASET_URI!r} on the "
                f"version or its run {mv.run_id}); pass reference_uri= with the data it was trained on."
            )
        return str(uri)

    def _signature_columns(self, mv: ModelVersion) -> list[str] | None:
        try:
            from mlflow.models import get_model_info

            signature = get_model_info(f"models:/{mv.name}/{mv.version}").signature
            names = signature.inputs.input_names() if signature is not None and signature.inputs else None
        except Exception as err:  # no signature / not a model format we know: compare shared columns
            self.log.info(
                "No usable signature on %s v%s (%s); comparing shared columns", mv.name, mv.version, err
            )
            return None
        names = [n for n in (names or []) if isinstance(n, str)]
        return names or None

    @staticmethod
    def _same_reference(recorded_fp: str, result: Any) -> bool:
        """Whether the reference is the model's training data (recomputed in the recorded fingerprint's algorithm)."""
        from airflow_mlops.core.lineage import algorithm_of, same_content

        if recorded_fp == result.reference_fingerprint:
            return True
        if algorithm_of(recorded_fp) in (None, algorithm_of(result.reference_fingerprint)):
            return False
        return same_content(recorded_fp, result.reference_uri)

    def _log_history(
        self,
        client: MlflowClient,
        name: str,
        mv: ModelVersion,
        result: DriftResult,
        identity: AirflowIdentity,
    ) -> str:
        """Log the drift share against the model version in one MLflow run per check (reused on retries)."""
        experiment_id = None
        if mv.run_id:
            try:
                experiment_id = client.get_run(mv.run_id).info.experiment_id
            except Exception:
                experiment_id = None
        if experiment_id is None:
            experiment = client.get_experiment_by_name(DRIFT_EXPERIMENT)
            experiment_id = (
                experiment.experiment_id if experiment else client.create_experiment(DRIFT_EXPERIMENT)
            )
        existing = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{TAG_TI_KEY}` = '{identity.ti_key}' and tags.`{TAG_DRIFT_MODEL}` = '{name}'",
            max_results=1,
        )
        tags = {
            **identity.to_tags(),
            TAG_DRIFT_MODEL: name,
            TAG_DRIFT_VERSION: str(mv.version),
            TAG_DRIFT_REPORT_URI: result.html_uri,
            TAG_DRIFT_REFERENCE_URI: result.reference_uri,
            TAG_DRIFT_CURRENT_URI: result.current_uri,
            TAG_DRIFT_REFERENCE_FINGERPRINT: result.reference_fingerprint or "",
            TAG_DRIFT_CURRENT_FINGERPRINT: result.current_fingerprint or "",
            TAG_DRIFT_COLUMNS: json.dumps(result.drifted_columns)[:7000],
        }
        if existing:
            run_id = existing[0].info.run_id
            for key, value in tags.items():
                client.set_tag(run_id, key, value)
        else:
            run_id = client.create_run(
                experiment_id, tags=tags, run_name=f"drift-{name}-v{mv.version}"
            ).info.run_id
        model_id = getattr(mv, "model_id", None)
        now_ms = int(time.time() * 1000)
        client.log_metric(
            run_id, METRIC_DRIFT_SHARE, float(result.drift_share), timestamp=now_ms, model_id=model_id
        )
        client.log_metric(
            run_id,
            METRIC_DRIFTED_COLUMNS,
            float(len(result.drifted_columns)),
            timestamp=now_ms,
            model_id=model_id,
        )
        client.set_terminated(run_id)
        client.set_model_version_tag(
            name,
            str(mv.version),
            TAG_DRIFT_LAST,
            json.dumps(
                {
                    "at": round(time.time(), 3),
                    "drift_share": round(result.drift_share, 6),
                    "drift_detected": result.drift_detected,
                    "report_uri": result.html_uri,
                    "run_id": run_id,
                }
            ),
        )
        return run_id

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
