"""Batch inference on Apache Spark: the champion pinned once, the schema checked first, the output committed once.

:class:`SparkBatchInferenceOperator` submits :mod:`airflow_mlops.core.scoring.spark_job` through the Apache Spark
provider's ``SparkSubmitHook``, to whatever cluster the Spark connection names (standalone, YARN, Kubernetes or
``local[*]``). The work around the submission (pinning, skip rule, schema check, commit, manifest) lives in
:mod:`airflow_mlops.core.scoring.spark`; this class renders arguments, opens the connections and publishes the
result exactly as :class:`~airflow_mlops.operators.inference.BatchInferenceOperator` does.
"""

from __future__ import annotations

import os
import re
import sys
from typing import TYPE_CHECKING, Any

from airflow_mlops.core.scoring.spark_job import ERROR_MARKER
from airflow_mlops.exceptions import MlopsConfigError, SchemaMismatch, SparkJobFailed, first_line
from airflow_mlops.links.inference import BatchInferenceModelLink
from airflow_mlops.operators.base import MlflowBaseOperator
from airflow_mlops.operators.common import fail_fast
from airflow_mlops.operators.inference import ScoringLineageMixin, _as_list, _default_outlets, _finish

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk.definitions.context import Context

DEFAULT_SPARK_CONN_ID = "spark_default"


def default_application() -> str:
    """The Spark application file shipped with the provider (it imports only PySpark and MLflow)."""
    from airflow_mlops.core.scoring import spark_job

    return str(spark_job.__file__)


def submit_error(err: BaseException, dataset: str, model: str) -> Exception:
    """One clear error from a failed spark-submit: the job's schema verdict, else its exit code and last lines."""
    text = str(err)
    for line in reversed(text.splitlines()):
        _, marker, rest = line.partition(ERROR_MARKER)
        if marker:
            return SchemaMismatch(f"dataset {dataset}: {rest.strip()} No predictions were written.")
    code = re.search(r"Error code is: (-?\d+)", text)
    reason = f"spark-submit exited with code {code.group(1)}" if code else first_line(err)
    tail = "\n".join(text.partition("Last spark-submit output:")[2].strip().splitlines()[-15:])
    return SparkJobFailed(
        f"the Spark job scoring {dataset} with {model} failed: {reason}. Nothing was published; a retry "
        "removes what it staged and runs again." + (f" Last spark-submit output:\n{tail}" if tail else "")
    )


class SparkBatchInferenceOperator(ScoringLineageMixin, MlflowBaseOperator):
    """
    Score a parquet dataset on Apache Spark with one registered model version, exactly once.

    The alias is resolved once to a concrete version before anything is submitted; the input's schema (every
    file's) is checked against the version's signature before anything is written; the Spark job scores with
    ``mlflow.pyfunc.spark_udf`` on that version and writes a staging folder through Spark's commit protocol,
    which the task then moves into ``output_uri`` (a folder of parquet parts) before it writes the manifest
    ``_<folder>.manifest.json`` beside it. A retry removes what a killed attempt staged and runs again; a
    re-run whose manifest proves the same input content and version were scored is skipped. Returns the same
    summary as :class:`~airflow_mlops.operators.inference.BatchInferenceOperator` and emits the same Asset event.

    .. code-block:: python

        SparkBatchInferenceOperator(
            task_id="score",
            model_uri="models:/churn@champion",
            input_uri="s3://lake/customers/{{ ds }}/",
            output_uri="s3://lake/predictions/churn/{{ run_id }}.parquet",
            passthrough_columns=["customer_id"],
            spark_conn_id="spark_yarn",
            conf={"spark.executor.instances": "20"},
        )

    :param model_uri: ``models:/<name>@<alias>``, ``models:/<name>/<version>`` or ``models:/<name>/latest``
        (templated).
    :param input_uri: A parquet file or a folder of parquet parts (templated).
    :param output_uri: The predictions folder to write (templated).
    :param input_files: Only these files (relative to the ``input_uri`` folder) (templated).
    :param passthrough_columns: Input columns copied next to the predictions, e.g. ids (templated).
    :param prediction_column: Name of the prediction column; multi-output models get ``<name>_<i>``
        (templated).
    :param feature_columns: Input columns in model order, for models without a column-based signature.
    :param force: Score even when the manifest says the work is already done.
    :param spark_conn_id: Spark connection (type ``spark``: host ``local[2]``, ``yarn``, ``spark://host:7077``,
        ``k8s://https://…``) (templated).
    :param conf: Spark configuration for this job, e.g. executor counts (templated).
    :param env_vars: Extra environment variables for the driver (templated). The MLflow connection's variables
        (tracking URI, credentials) are added; the driver downloads the model and ships it to the executors.
    :param python: Interpreter of the driver and executors (``spark.pyspark.python``); default this worker's
        Python on a ``local`` master, the cluster's otherwise (templated).
    :param application: The application file to submit; default the provider's ``spark_job.py``. Point it at
        a copy inside the cluster's image (``local:///opt/…/spark_job.py``) for cluster deploy mode (templated).
    :param spark_binary: ``spark-submit`` (default: the connection's ``spark-binary`` extra, else
        ``spark-submit`` found on ``PATH`` or next to this worker's Python).
    :param driver_memory: e.g. ``2g``. :param executor_memory: e.g. ``4g``.
    :param executor_cores: Cores per executor. :param num_executors: Executors on YARN/Kubernetes.
    :param verbose: spark-submit ``--verbose``.
    :param mlflow_conn_id: MLflow connection; default ``[mlops] mlflow_conn_id`` (templated).
    """

    template_fields: Sequence[str] = (
        "model_uri",
        "input_uri",
        "output_uri",
        "input_files",
        "passthrough_columns",
        "prediction_column",
        "spark_conn_id",
        "conf",
        "env_vars",
        "python",
        "application",
        "mlflow_conn_id",
    )
    template_fields_renderers = {"conf": "json", "env_vars": "json"}
    operator_extra_links = (BatchInferenceModelLink(),)
    ui_color = "#fde2c4"

    def __init__(
        self,
        *,
        model_uri: str,
        input_uri: str,
        output_uri: str,
        input_files: Sequence[str] | str | None = None,
        passthrough_columns: Sequence[str] | str = (),
        prediction_column: str = "prediction",
        feature_columns: Sequence[str] | None = None,
        force: bool = False,
        spark_conn_id: str = DEFAULT_SPARK_CONN_ID,
        conf: dict[str, Any] | str | None = None,
        env_vars: dict[str, str] | None = None,
        python: str | None = None,
        application: str | None = None,
        spark_binary: str | None = None,
        driver_memory: str | None = None,
        executor_memory: str | None = None,
        executor_cores: int | None = None,
        num_executors: int | None = None,
        verbose: bool = False,
        mlflow_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("multiple_outputs", True)
        _default_outlets(kwargs)
        super().__init__(mlflow_conn_id=mlflow_conn_id, **kwargs)
        if conf is not None and not isinstance(conf, dict | str):
            raise MlopsConfigError(
                f"conf of task {kwargs.get('task_id')} is a {type(conf).__name__}; give a dict of Spark settings, "
                'e.g. {"spark.executor.instances": "8"}.'
            )
        if isinstance(passthrough_columns, list | tuple) and prediction_column in passthrough_columns:
            raise MlopsConfigError(
                f"passthrough column {prediction_column!r} of task {kwargs.get('task_id')} clashes with the "
                "prediction column; rename prediction_column."
            )
        self.model_uri = model_uri
        self.input_uri = input_uri
        self.output_uri = output_uri
        self.input_files = input_files
        self.passthrough_columns = passthrough_columns
        self.prediction_column = prediction_column
        self.feature_columns = feature_columns
        self.force = force
        self.spark_conn_id = spark_conn_id
        self.conf: Any = conf or {}
        self.env_vars = env_vars or {}
        self.python = python
        self.application = application
        self.spark_binary = spark_binary
        self.driver_memory = driver_memory
        self.executor_memory = executor_memory
        self.executor_cores = executor_cores
        self.num_executors = num_executors
        self.verbose = verbose
        self._spark_hook: Any = None

    def _is_local_master(self) -> bool:
        """Whether the Spark connection's master is ``local[...]`` (driver and executors on this worker)."""
        from airflow.sdk import BaseHook

        try:
            conn = BaseHook.get_connection(str(self.spark_conn_id or DEFAULT_SPARK_CONN_ID))
        except Exception:  # noqa: BLE001 - SparkSubmitHook itself reports a missing connection (it defaults to yarn)
            return False
        master = str(conn.host or "") if conn.conn_type == "spark" else ""
        return master.lower().startswith("local")

    def _driver_env(self, mlflow_env: dict[str, str], local: bool) -> dict[str, str]:
        if not isinstance(self.env_vars, dict):
            raise MlopsConfigError(f"{self.task_id}: env_vars must render to a dict, not {self.env_vars!r}.")
        env = {str(k): str(v) for k, v in self.env_vars.items()}
        env.update(mlflow_env)
        env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        bin_dir = os.path.dirname(sys.executable)
        if os.path.exists(
            os.path.join(bin_dir, "spark-submit")
        ):  # pyspark in this environment: its spark-submit
            env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', os.environ.get('PATH', ''))}"
        python = self.python or (sys.executable if local else None)
        if python:
            env.setdefault("PYSPARK_PYTHON", python)
            env.setdefault("PYSPARK_DRIVER_PYTHON", python)
        return env

    def build_spark_hook(self, job_name: str, arguments: list[str], env: dict[str, str]) -> Any:
        """The provider's SparkSubmitHook for one submission of the scoring application."""
        from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook

        if not isinstance(self.conf, dict):
            raise MlopsConfigError(f"{self.task_id}: conf must render to a dict, not {self.conf!r}.")
        conf = {str(k): str(v) for k, v in self.conf.items()}
        conf.setdefault("spark.ui.showConsoleProgress", "false")
        return SparkSubmitHook(
            conf=conf,
            conn_id=str(self.spark_conn_id or DEFAULT_SPARK_CONN_ID),
            name=job_name,
            application_args=arguments,
            env_vars=env,
            spark_binary=self.spark_binary,
            driver_memory=self.driver_memory,
            executor_memory=self.executor_memory,
            executor_cores=self.executor_cores,
            num_executors=self.num_executors,
            verbose=self.verbose,
        )

    @fail_fast
    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.core.scoring.spark import prepared_spark_job
        from airflow_mlops.operators.common import identity_from_context

        identity = identity_from_context(context)
        job_name = f"mlops-score-{identity.dag_id}-{identity.task_id}"[:120]
        hook = self.mlflow_hook
        with (
            hook.session() as client,
            prepared_spark_job(
                client,
                self.model_uri,
                self.input_uri,
                self.output_uri,
                input_files=_as_list(self.input_files, "input_files"),
                passthrough_columns=_as_list(self.passthrough_columns, "passthrough_columns") or [],
                prediction_column=self.prediction_column,
                feature_columns=self.feature_columns,
                force=self.force,
                log=self.log,
            ) as job,
        ):
            if job.done is not None:
                result = job.done
            else:
                env = self._driver_env(hook.child_env(), self._is_local_master())
                spark = self.build_spark_hook(job_name, job.job_arguments(app_name=job_name), env)
                self.log.info(
                    "Submitting %s through connection %r: %d input row(s) of %s scored by %s",
                    self.application or "spark_job.py",
                    self.spark_conn_id,
                    job.total_rows,
                    job.dataset.uri,
                    job.model.ref.describe(),
                )
                self._spark_hook = spark
                try:
                    spark.submit(application=str(self.application or default_application()))
                except Exception as err:
                    raise submit_error(err, job.dataset.uri, job.model.ref.describe()) from err
                finally:
                    self._spark_hook = None
                result = job.commit()
        return _finish(self, context, result, hook.ui_url)

    def on_kill(self) -> None:
        spark = self._spark_hook
        if spark is not None:
            spark.on_kill()
