"""Streaming batch inference operators: score a dataset with the champion, exactly once, shardable.

* :class:`BatchInferenceOperator` scores one dataset (or one shard of it) into one parquet file + manifest.
* :class:`BatchInferencePlanOperator` pins the model version once and splits a dataset folder into shards for
  ``BatchInferenceOperator.partial(...).expand_kwargs(plan.output)``.
* :class:`BatchInferenceCombineOperator` checks the shards' manifests and publishes the folder as one dataset.

The work itself lives in :mod:`airflow_mlops.core.scoring`; these classes render arguments, open the MLflow
connection, call one core function and publish the result (XCom summary, Asset event, model-version link).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import MlopsConfigError
from airflow_mlops.links.inference import BatchInferenceModelLink
from airflow_mlops.operators.base import MlflowBaseOperator
from airflow_mlops.operators.common import fail_fast
from airflow_mlops.operators.openlineage import OpenLineageMixin

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.definitions.context import Context

    from airflow_mlops.core.openlineage import LineageSpec


PREDICTIONS_ASSET_ALIAS = "mlops-predictions"


def _publish(operator: BaseOperator, context: Context, output_uri: str, extra: dict[str, Any]) -> None:
    """
    Attach ``extra`` to every Asset outlet; add the output as an Asset through every AssetAlias outlet, once per
    task instance and content (model version + input fingerprint): a cleared task that finds or rewrites the
    same predictions does not trigger consumers twice, while new predictions (another champion, new input)
    always emit.
    """
    from airflow.sdk import Asset, AssetAlias

    from airflow_mlops.core.storage import asset_uri as to_asset_uri
    from airflow_mlops.operators.common import emitted_before, identity_from_context

    events: Any = context["outlet_events"]
    asset_uri = to_asset_uri(output_uri)
    content = f"{extra.get('model_name')}/{extra.get('model_version')}@{extra.get('input_fingerprint')}"
    extra = {**extra, "emit_key": f"{identity_from_context(context).ti_key}@{asset_uri}@{content}"}
    for outlet in operator.outlets or ():
        if isinstance(outlet, AssetAlias):
            if emitted_before(context, outlet, "emit_key", extra["emit_key"], operator.log):
                operator.log.info(
                    "This task already published %s with this content: no new event", output_uri
                )
                continue
            events[outlet].add(Asset(uri=asset_uri, name=asset_uri), extra=extra)
        elif isinstance(outlet, Asset):
            events[outlet].extra = extra


def _event_extra(summary: dict[str, Any]) -> dict[str, Any]:
    """What a predictions Asset event carries: the producing model version, the output and the input content."""
    keys = ("model_name", "model_version", "rows", "output_uri", "manifest_uri", "input_fingerprint")
    return {k: summary.get(k) for k in keys}


def _as_sequence(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _default_outlets(kwargs: dict[str, Any]) -> None:
    """Publish through the predictions alias by default; read every alias back (see :func:`_publish`)."""
    from airflow.sdk import AssetAlias

    outlets = _as_sequence(kwargs.get("outlets")) if kwargs.get("outlets") is not None else None
    kwargs["outlets"] = [AssetAlias(name=PREDICTIONS_ASSET_ALIAS)] if outlets is None else outlets
    aliases = [o for o in kwargs["outlets"] if isinstance(o, AssetAlias)]
    inlets = _as_sequence(kwargs.get("inlets"))
    kwargs["inlets"] = inlets + [a for a in aliases if a not in inlets]


def _as_list(value: Any, what: str) -> list[str] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    if isinstance(value, Sequence):
        return [str(v) for v in value]
    raise MlopsConfigError(f"{what} must be a list of strings or a comma-separated string, not {value!r}.")


def _finish(operator: BaseOperator, context: Context, result: Any, ui_url: str | None) -> dict[str, Any]:
    """Link the model version, publish the predictions (once per content), return the small summary."""
    from airflow_mlops.links.base import mlflow_model_version_url, push_link

    push_link(
        context,
        BatchInferenceModelLink,
        mlflow_model_version_url(ui_url, result.model_name, result.model_version),
    )
    summary: dict[str, Any] = result.to_summary()
    operator._mlops_summary = summary  # type: ignore[attr-defined]
    _publish(operator, context, result.output_uri, _event_extra(summary))
    return summary


class ScoringLineageMixin(OpenLineageMixin):
    """The lineage of a scoring task: the input batch and the pinned model version in, the predictions out."""

    model_uri: Any = None
    input_uri: Any = None

    def lineage_spec(self, summary: dict[str, Any]) -> LineageSpec:
        from airflow_mlops.core.openlineage import alias_of, scoring_lineage

        if not summary and self.input_uri:
            summary = {"input_uri": self.input_uri}
        return scoring_lineage(summary, self._tracking_uri(), alias_of(self.model_uri))


class BatchInferenceOperator(ScoringLineageMixin, MlflowBaseOperator):
    """
    Score a dataset with a registered model version and write predictions exactly once.

    Resolves ``model_uri`` (``models:/<name>@<alias>``) to one concrete version, streams the input in Arrow
    batches (bounded memory), checks the input schema against the model signature before writing anything,
    and writes ``output_uri`` (a parquet file: passthrough columns + predictions) atomically, then a manifest
    ``_<file>.manifest.json`` beside it. A retry replaces the output, or skips the work when the manifest
    proves the same input and model version were already scored. Returns a small summary dict
    (``model_name``, ``model_version``, ``model_uri``, ``model_run_id``, ``rows``, ``output_uri``,
    ``manifest_uri``, ``input_uri``, ``input_fingerprint``, ``skipped``, ``elapsed_s``) and emits an Asset event
    whose extra carries the model version and row count (by default through the AssetAlias
    ``mlops-predictions``, which adds the output URI as an Asset; pass ``outlets=[Asset(...)]`` to choose).

    .. code-block:: python

        BatchInferenceOperator(
            task_id="score",
            model_uri="models:/churn@champion",
            input_uri="s3://lake/customers/{{ dag_run.run_after | ds }}/",
            output_uri="s3://lake/predictions/churn/{{ run_id }}.parquet",
            passthrough_columns=["customer_id"],
        )

    :param model_uri: ``models:/<name>@<alias>``, ``models:/<name>/<version>`` or ``models:/<name>/latest``
        (templated).
    :param input_uri: A parquet file, a folder of parquet parts or CSV files, on any fsspec filesystem
        (templated).
    :param output_uri: The predictions parquet file to write (templated).
    :param input_files: Only these files (relative to the ``input_uri`` folder): one shard (templated).
    :param passthrough_columns: Input columns copied next to the predictions, e.g. ids (templated).
    :param prediction_column: Name of the prediction column; multi-output models get ``<name>_<i>``
        (templated).
    :param batch_size: Rows per Arrow batch; default ``[mlops] inference_batch_size`` (65536).
    :param flavor: ``auto`` (native sklearn/pytorch when possible), ``native`` or ``pyfunc``.
    :param feature_columns: Input columns in model order, for models without a column-based signature.
    :param force: Score even when the manifest says the work is already done.
    :param progress_interval: Seconds between progress lines in the log.
    :param mlflow_conn_id: MLflow connection; default ``[mlops] mlflow_conn_id`` (templated).
    """

    template_fields: Sequence[str] = (
        "model_uri",
        "input_uri",
        "output_uri",
        "input_files",
        "passthrough_columns",
        "prediction_column",
        "mlflow_conn_id",
    )
    operator_extra_links = (BatchInferenceModelLink(),)
    ui_color = "#d8f3dc"

    def __init__(
        self,
        *,
        model_uri: str,
        input_uri: str,
        output_uri: str,
        input_files: Sequence[str] | str | None = None,
        passthrough_columns: Sequence[str] | str = (),
        prediction_column: str = "prediction",
        batch_size: int | None = None,
        flavor: str = "auto",
        feature_columns: Sequence[str] | None = None,
        force: bool = False,
        progress_interval: float = 5.0,
        mlflow_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("multiple_outputs", True)  # so ``score.output["model_version"]`` works downstream
        _default_outlets(kwargs)
        super().__init__(mlflow_conn_id=mlflow_conn_id, **kwargs)
        if flavor not in ("auto", "native", "pyfunc"):
            raise MlopsConfigError(f"flavor {flavor!r} is not one of 'auto', 'native', 'pyfunc'.")
        if batch_size is not None and int(batch_size) < 1:
            raise MlopsConfigError(f"batch_size must be a positive number of rows, not {batch_size!r}.")
        self.model_uri = model_uri
        self.input_uri = input_uri
        self.output_uri = output_uri
        self.input_files = input_files
        self.passthrough_columns = passthrough_columns
        self.prediction_column = prediction_column
        self.batch_size = batch_size
        self.flavor = flavor
        self.feature_columns = feature_columns
        self.force = force
        self.progress_interval = progress_interval

    @fail_fast
    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.core.scoring import run_batch_inference
        from airflow_mlops.settings import get_settings

        hook = self.mlflow_hook
        batch_size = int(self.batch_size or get_settings().inference_batch_size)
        with hook.session() as client:
            result = run_batch_inference(
                client,
                self.model_uri,
                self.input_uri,
                self.output_uri,
                input_files=_as_list(self.input_files, "input_files"),
                passthrough_columns=_as_list(self.passthrough_columns, "passthrough_columns") or [],
                prediction_column=self.prediction_column,
                batch_size=batch_size,
                flavor=self.flavor,
                feature_columns=self.feature_columns,
                force=self.force,
                progress_interval=self.progress_interval,
                log=self.log,
            )
        return _finish(self, context, result, hook.ui_url)


class BatchInferencePlanOperator(ScoringLineageMixin, MlflowBaseOperator):
    """
    Pin the model version once and split a dataset folder into shards for mapped scoring tasks.

    Returns a list of keyword-argument dicts (``model_uri`` = ``models:/<name>/<version>``, ``input_uri``,
    ``input_files``, ``output_uri`` = ``<output_uri>/part-<i>.parquet``) for
    ``BatchInferenceOperator.partial(...).expand_kwargs(plan.output)``; every shard therefore scores with the
    same version even if the alias moves meanwhile.

    .. code-block:: python

        plan = BatchInferencePlanOperator(
            task_id="plan",
            model_uri="models:/churn@champion",
            input_uri="s3://lake/customers/{{ dag_run.run_after | ds }}/",
            output_uri="s3://lake/predictions/churn/{{ run_id }}/",
            num_shards=8,
        )
        score = BatchInferenceOperator.partial(
            task_id="score", passthrough_columns=["customer_id"], outlets=[]
        ).expand_kwargs(plan.output)
        BatchInferenceCombineOperator(
            task_id="combine", output_uri="s3://lake/predictions/churn/{{ run_id }}/", shards=score.output
        )

    :param model_uri: Registry URI to pin (templated).
    :param input_uri: The dataset folder to split (templated).
    :param output_uri: The folder the shards write their parts into (templated).
    :param num_shards: At most this many shards (consecutive files grouped); default one per file.
    :param mlflow_conn_id: MLflow connection; default ``[mlops] mlflow_conn_id`` (templated).
    """

    template_fields: Sequence[str] = ("model_uri", "input_uri", "output_uri", "mlflow_conn_id")
    operator_extra_links = (BatchInferenceModelLink(),)

    def __init__(
        self,
        *,
        model_uri: str,
        input_uri: str,
        output_uri: str,
        num_shards: int | None = None,
        mlflow_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(mlflow_conn_id=mlflow_conn_id, **kwargs)
        if num_shards is not None and int(num_shards) < 1:
            raise MlopsConfigError(f"num_shards must be at least 1, not {num_shards!r}.")
        self.model_uri = model_uri
        self.input_uri = input_uri
        self.output_uri = output_uri
        self.num_shards = num_shards

    @fail_fast
    def execute(self, context: Context) -> list[dict[str, Any]]:
        from airflow_mlops.core.scoring import plan_shards, resolve_model
        from airflow_mlops.links.base import mlflow_model_version_url, push_link

        hook = self.mlflow_hook
        with hook.session() as client:
            ref = resolve_model(client, self.model_uri)
        shards = plan_shards(self.input_uri, self.output_uri, model_uri=ref.uri, num_shards=self.num_shards)
        self.log.info("Planned %d shard(s) of %s scored by %s", len(shards), self.input_uri, ref.describe())
        push_link(
            context, BatchInferenceModelLink, mlflow_model_version_url(hook.ui_url, ref.name, ref.version)
        )
        return [s.to_kwargs() for s in shards]


class BatchInferenceCombineOperator(ScoringLineageMixin, MlflowBaseOperator):
    """
    Combine the parts of a sharded scoring job into one dataset (the ``output_uri`` folder).

    Checks that every shard wrote a valid manifest with the same model version and schema, removes part files
    an earlier, different plan left in the folder, writes ``<output_uri>/_manifest.json`` last, and emits the
    Asset event (extra: model version, total rows). Returns ``{"model_name", "model_version", "model_run_id",
    "rows", "output_uri", "manifest_uri", "parts"}``.

    :param output_uri: The folder the shards wrote into (templated).
    :param shards: The mapped scoring task's output (summaries with ``output_uri``) or the part URIs
        (templated; pass ``score.output``).
    :param mlflow_conn_id: MLflow connection, for the model link; default ``[mlops] mlflow_conn_id`` (templated).
    """

    template_fields: Sequence[str] = ("output_uri", "shards", "mlflow_conn_id")
    operator_extra_links = (BatchInferenceModelLink(),)

    def __init__(
        self, *, output_uri: str, shards: Any, mlflow_conn_id: str | None = None, **kwargs: Any
    ) -> None:
        _default_outlets(kwargs)
        super().__init__(mlflow_conn_id=mlflow_conn_id, **kwargs)
        self.output_uri = output_uri
        self.shards = shards

    @fail_fast
    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.core.scoring import combine_shards

        outputs = []
        for shard in list(self.shards or ()):
            uri = shard.get("output_uri") if isinstance(shard, dict) else shard
            if not isinstance(uri, str) or not uri:
                raise MlopsConfigError(
                    f"shard entry {shard!r} has no output_uri; pass the scoring task's output (score.output)."
                )
            outputs.append(uri)
        result = combine_shards(self.output_uri, outputs, log=self.log)
        try:
            ui_url = self.mlflow_hook.ui_url
        except Exception:  # noqa: BLE001 - the link is a convenience; a missing connection must not fail the combine
            ui_url = None
        return _finish(self, context, result, ui_url)
