"""GXValidateDatasetOperator: Great Expectations validation of a dataset URI, with a report and an Asset event."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetAlias, BaseOperator

from airflow_mlops.core.storage import safe_segment
from airflow_mlops.exceptions import DataValidationFailed, MlopsConfigError
from airflow_mlops.links.validation import GXValidationReportLink
from airflow_mlops.operators.common import OnFailure, emitted_before, fail_fast, identity_from_context
from airflow_mlops.operators.openlineage import OpenLineageMixin

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context

    from airflow_mlops.core.lineage import AirflowIdentity
    from airflow_mlops.core.openlineage import LineageSpec
    from airflow_mlops.core.validation import ValidationResult

ASSET_ALIAS_PREFIX = "mlops-validated"


def default_report_uri(report_base_uri: str, identity: AirflowIdentity) -> str:
    """``<report_base_uri>/validation/<dag_id>/<run_id>/<task_id>[.<map_index>]``."""
    from airflow_mlops.core.storage import join_uri

    task = identity.task_id if identity.map_index < 0 else f"{identity.task_id}.{identity.map_index}"
    return join_uri(
        report_base_uri,
        "validation",
        safe_segment(identity.dag_id),
        safe_segment(identity.run_id),
        safe_segment(task),
    )


def dataset_asset(dataset_uri: str) -> Asset:
    """The Asset of a dataset URI (local paths become absolute ``file://`` URIs; no connection id)."""
    from airflow_mlops.core.storage import asset_uri

    return Asset(uri=asset_uri(str(dataset_uri)))


class GXValidateDatasetOperator(OpenLineageMixin, BaseOperator):
    """
    Validate a dataset (parquet or CSV, file or folder, any fsspec URI) with a Great Expectations 1.x suite.

    Nothing is read at DAG parse time. In ``execute`` only the columns the suite needs are read, the suite runs
    in an ephemeral GX context (GX's log noise and progress bars silenced, see ``[mlops]
    quiet_third_party_logs``), and ``validation.json`` + a self-contained ``validation.html`` are written
    atomically under ``report_uri``; the "Validation report" extra link opens the HTML. Bad input (missing or
    corrupt data, unknown expectation, column not in the data, broken suite JSON, empty data) fails the task
    with one clear error and writes no report.

    On success, and on a failed suite with ``on_failure="warn"``, the dataset is published as an Asset event
    whose extra is ``{"fingerprint": ..., "summary": {...}}``: on ``asset`` when given, else on an Asset for
    the rendered dataset URI added through the AssetAlias ``mlops-validated:<dag_id>.<task_id>`` (or
    ``asset_alias``), so templated URIs work.

    Returns (XCom) the summary; with ``skip``/``fail`` it is pushed as ``return_value`` before the exception:
    ``success, status ("passed"|"failed"), dataset_uri, fingerprint, suite, rows, evaluated, successful,
    unsuccessful, success_percent, failed_expectations (up to 10 one-liners), report_uri, report_json_uri,
    elapsed_s, on_failure``.

    .. code-block:: python

        validate = GXValidateDatasetOperator(
            task_id="validate",
            dataset_uri="s3://lake/churn/{{ dag_run.run_after | ds }}.parquet",
            suite="suites/churn.json",  # relative to this DAG file's folder
            on_failure="warn",
        )


        @task.branch
        def route(summary: dict) -> str:
            return "train" if summary["success"] else "quarantine"


        route(validate.output)

    :param dataset_uri: Dataset to validate (templated): local path, ``file://`` or fsspec URI; a file or a
        folder of parquet parts / CSV files.
    :param suite: The expectations (templated): a path to a GX suite JSON file (relative paths are looked up
        next to the DAG file), a list of ``{"type": "expect_...", "kwargs": {...}}`` dicts, a suite dict, a
        ``gx.ExpectationSuite``, or a callable returning one (called in ``execute``, not templated).
    :param report_uri: Folder for ``validation.json``/``validation.html`` (templated); default:
        ``<[mlops] report_base_uri>/validation/<dag_id>/<run_id>/<task_id>``.
    :param on_failure: ``fail`` (default), ``warn`` or ``skip``; see :class:`OnFailure`.
    :param suite_name: Name shown in results and reports (templated); default: the suite's own name.
    :param allow_empty: Validate an empty dataset instead of failing with "dataset ... is empty".
    :param examples: Distinct unexpected values kept per failed expectation (default 5).
    :param asset: Asset (or URI) to publish the event on instead of the per-task alias.
    :param asset_alias: Name of the AssetAlias used when ``asset`` is not given.
    :param publish_asset: Set False to publish no Asset event at all.
    """

    template_fields: Sequence[str] = ("dataset_uri", "suite", "report_uri", "suite_name")
    template_fields_renderers = {"suite": "json"}
    operator_extra_links = (GXValidationReportLink(),)
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        dataset_uri: str,
        suite: str | Sequence[Mapping[str, Any]] | Mapping[str, Any] | Callable[[], Any] | Any,
        report_uri: str | None = None,
        on_failure: OnFailure | str = OnFailure.FAIL,
        suite_name: str | None = None,
        allow_empty: bool = False,
        examples: int = 5,
        asset: Asset | str | None = None,
        asset_alias: str | None = None,
        publish_asset: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        try:
            self.on_failure = OnFailure(on_failure)
        except ValueError:
            raise MlopsConfigError(
                f"on_failure={on_failure!r} for task {self.task_id} is not one of "
                f"{[m.value for m in OnFailure]}; pick 'fail', 'warn' or 'skip'."
            ) from None
        plain = isinstance(suite, (str, os.PathLike, list, tuple, Mapping)) or hasattr(suite, "expectations")
        if not plain and not callable(suite):
            raise MlopsConfigError(
                f"suite of task {self.task_id} is a {type(suite).__name__}; give a suite JSON path, a list of "
                '{"type": "expect_...", "kwargs": {...}} dicts, or a callable returning a gx.ExpectationSuite.'
            )
        if not isinstance(examples, int) or examples < 0:
            raise MlopsConfigError(f"examples={examples!r} for task {self.task_id} must be an integer >= 0.")
        self.dataset_uri = dataset_uri
        # Airflow calls callables found in template fields with (context, jinja_env), so a suite factory is
        # kept out of the templated ``suite`` field and called by the core in execute.
        self.suite_factory: Callable[[], Any] | None = None if plain else suite  # type: ignore[assignment]
        self.suite: Any = suite if plain else None
        self.report_uri = report_uri
        self.suite_name = suite_name
        self.allow_empty = allow_empty
        self.examples = examples
        self.publish_asset = publish_asset
        self.asset: Asset | None = Asset(uri=asset) if isinstance(asset, str) else asset
        self.asset_alias: AssetAlias | None = None
        if publish_asset and self.asset is not None:
            self.outlets = [*self.outlets, self.asset]
        elif publish_asset:
            owner = f"{self.dag_id}.{self.task_id}" if self.has_dag() else self.task_id  # type: ignore[no-untyped-call]
            self.asset_alias = AssetAlias(name=asset_alias or f"{ASSET_ALIAS_PREFIX}:{owner}")
            self.outlets = [*self.outlets, self.asset_alias]
            self.inlets = [*self.inlets, self.asset_alias]  # read back this task's past events (no re-emit)

    _mlops_assertions: tuple[Any, ...] = ()

    def lineage_spec(self, summary: dict[str, Any]) -> LineageSpec:
        """The dataset (fingerprint, GX assertions) in, the reports out; before a result: the dataset only."""
        from airflow_mlops.core.openlineage import validation_lineage

        return validation_lineage(summary or {"dataset_uri": self.dataset_uri}, tuple(self._mlops_assertions))

    @fail_fast
    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from airflow_mlops.core.openlineage import Assertion
        from airflow_mlops.core.report_owner import write_owner
        from airflow_mlops.core.validation import validate_dataset
        from airflow_mlops.links.base import push_link, report_view_url
        from airflow_mlops.settings import get_settings

        settings = get_settings()
        identity = identity_from_context(context)
        dataset_uri = str(self.dataset_uri)
        report_uri = self.report_uri or default_report_uri(settings.report_base_uri, identity)
        suite = self.suite_factory or self._resolve_suite_path(self.suite, context)

        self.log.info("::group::Validating %s", dataset_uri)
        result = validate_dataset(
            dataset_uri,
            suite,
            report_uri=report_uri,
            suite_name=self.suite_name or None,
            allow_empty=self.allow_empty,
            examples=self.examples,
            labels={
                "dag_id": identity.dag_id,
                "run_id": identity.run_id,
                "task_id": identity.task_id,
                "try_number": str(identity.try_number),
            },
            quiet=settings.quiet_third_party_logs,
        )
        self.log.info(
            "Suite %s on %s (%s rows, columns read: %s): %s of %s expectations passed in %.2f s",
            result.suite_name,
            result.dataset_uri,
            result.rows,
            ", ".join(result.columns_read) or "none",
            result.successful,
            result.evaluated,
            result.elapsed_s,
        )
        self.log.info("::endgroup::")
        self.log.info("Report: %s", result.report_uri)
        if result.report_uri:
            files = [u for u in (result.report_uri, result.report_json_uri) if u]
            write_owner(identity, files)  # the report viewer serves the files to readers of this DAG only
            push_link(context, GXValidationReportLink, report_view_url(result.report_uri))
        summary = {**result.to_summary(), "on_failure": self.on_failure.value}
        self._mlops_summary = summary
        self._mlops_assertions = tuple(
            Assertion(o.label(), bool(o.success), o.column) for o in result.outcomes
        )
        if result.success:
            self._publish(context, result, summary)
            return summary

        for outcome in result.failed:
            self.log.warning("Failed expectation: %s", outcome.brief())
        if self.on_failure is OnFailure.WARN:
            self.log.warning("Suite %s failed; on_failure=warn, the task succeeds.", result.suite_name)
            self._publish(context, result, summary)
            return summary
        context["ti"].xcom_push(key="return_value", value=summary)
        if self.on_failure is OnFailure.SKIP:
            raise AirflowSkipException(f"{result.failure_message()} on_failure=skip: downstream tasks skip.")
        raise DataValidationFailed(result.failure_message())  # permanent: fail_fast fails it without retries

    def _resolve_suite_path(self, suite: Any, context: Context) -> Any:
        """A relative suite path is looked up next to the DAG file first (suites live in the DAG repo)."""
        if not isinstance(suite, (str, os.PathLike)):
            return suite
        path = os.fspath(suite)
        if "://" in path or os.path.isabs(path):
            return path
        dag = context.get("dag") or (self.dag if self.has_dag() else None)  # type: ignore[no-untyped-call]
        fileloc = getattr(dag, "fileloc", None)
        if fileloc:
            candidate = os.path.normpath(os.path.join(os.path.dirname(fileloc), path))
            if os.path.exists(candidate):
                return candidate
        return os.path.normpath(path)

    def _publish(self, context: Context, result: ValidationResult, summary: dict[str, Any]) -> None:
        if not self.publish_asset:
            return
        extra: dict[str, Any] = {"fingerprint": result.fingerprint, "summary": summary}
        events: Any = context["outlet_events"]
        if self.asset is not None:
            events[self.asset].extra = extra
            self.log.info("Asset event on %s (fingerprint %s)", self.asset.uri, result.fingerprint)
        elif self.asset_alias is not None:
            asset = dataset_asset(result.dataset_uri)
            # One event per task instance and data content: a cleared or retried task that validates the same
            # data again does not trigger the dataset's consumers twice.
            identity = identity_from_context(context)
            extra["emit_key"] = f"{identity.ti_key}@{result.fingerprint}"
            if emitted_before(context, self.asset_alias, "emit_key", extra["emit_key"], self.log):
                self.log.info(
                    "This task already published %s with this content; no new Asset event", asset.uri
                )
                return
            events[self.asset_alias].add(asset, extra=extra)
            self.log.info(
                "Asset event on %s through alias %s (fingerprint %s)",
                asset.uri,
                self.asset_alias.name,
                result.fingerprint,
            )
