"""Training operators: what both training operators share, and LocalTrainModelOperator.

Both run the same entrypoint (``python -m airflow_mlops.training --spec <json>``), in a local subprocess here
and in a pod in ``operators/kubernetes.py``. The training process tags its MLflow run with the task identity;
after it ends the operator finds that run and returns ``{run_id, experiment_id, model_uri, metrics,
dataset_uri, dataset_fingerprint, run_url}`` (``multiple_outputs``: ``train.output["run_id"]`` works). No
Kubernetes import here.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_mlops.core.tags import TAG_VALIDATION, TAG_VALIDATION_REPORT
from airflow_mlops.core.training_result import (
    EXIT_BAD_INPUT,
    IDENTITY_ENV,
    entrypoint_args,
    error_from_lines,
    find_training_run,
)
from airflow_mlops.core.training_spec import ModelFamily, ModelSpec, TrainingSpec, load_spec_json
from airflow_mlops.exceptions import MlopsConfigError, TrainingFailed, TrainingSpecError
from airflow_mlops.links.base import XComUrlLink, push_link
from airflow_mlops.operators.base import MlflowBaseOperator
from airflow_mlops.operators.common import fail_fast, identity_from_context, optional_text
from airflow_mlops.operators.openlineage import OpenLineageMixin

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context

    from airflow_mlops.core.lineage import AirflowIdentity
    from airflow_mlops.core.openlineage import LineageSpec
    from airflow_mlops.hooks.mlflow import MlflowHook

TAIL_LINES = 40
_UNSAFE_PATH_CHARS = re.compile(r"[^A-Za-z0-9._=-]+")
# Variables a training child never needs: Airflow connections/variables carry other secrets.
_DROPPED_ENV_PREFIXES = ("AIRFLOW_CONN_", "AIRFLOW_VAR_", "MLFLOW_TRACKING_", "MLFLOW_REGISTRY_URI")


def _die_with_parent() -> Any:
    """
    On Linux, a pre-exec hook that has the kernel SIGKILL the training process when the task process that
    started it dies (``PR_SET_PDEATHSIG``): a worker killed by the OOM killer or a lost node must not leave a
    training process running without its task while the retry trains again. None elsewhere.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, not between fork and exec
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGKILL))

    return hook


class MlflowTrainingRunLink(XComUrlLink):
    """Link from a training task to the MLflow run it produced."""

    name: ClassVar[str] = "MLflow training run"
    xcom_url_key: ClassVar[str] = "mlops_training_run_url"


def default_checkpoint_uri(identity: AirflowIdentity, base_uri: str | None = None) -> str:
    """``<storage_base_uri>/checkpoints/<dag>/<run>/<task>[/<map_index>]/checkpoint.pt`` (stable across tries)."""
    from airflow_mlops.core.storage import join_uri

    if base_uri is None:
        from airflow_mlops.settings import get_settings

        base_uri = get_settings().storage_base_uri
    parts = [identity.dag_id, identity.run_id, identity.task_id]
    if identity.map_index >= 0:
        parts.append(str(identity.map_index))
    safe = [_UNSAFE_PATH_CHARS.sub("_", p).strip(".") or "_" for p in parts]
    return join_uri(base_uri, "checkpoints", *safe, "checkpoint.pt")


def validation_tag(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a validation summary recorded as the ``mlops.data.validation`` tag of the training run."""
    keep = ("success", "status", "suite", "evaluated", "unsuccessful", "rows", "fingerprint", "dataset_uri")
    return {k: summary[k] for k in keep if k in summary}


def _mapping_arg(value: Any, name: str, task_id: str) -> dict[str, Any]:
    """A mapping argument that may arrive as a rendered JSON string (``{{ params.x | tojson }}``)."""
    if isinstance(value, str):
        text = optional_text(value)
        if text is None:
            return {}
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise MlopsConfigError(
                f"task {task_id!r}: {name} rendered to {text[:200]!r}, which is not a JSON object; render it "
                "with the tojson filter, e.g. '{{ params.hyperparameters | tojson }}'."
            ) from None
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MlopsConfigError(
            f"task {task_id!r}: {name} must be an object (mapping), got {type(value).__name__} {value!r}."
        )
    return dict(value)


class TrainingOperatorMixin(OpenLineageMixin):
    """
    What LocalTrainModelOperator and KubernetesTrainModelOperator share: build and check the spec, build the
    child environment and resolve the MLflow run after the process or pod ends.

    The host class stores ``training`` (templated spec) and is an MlflowBaseOperator (``mlflow_hook``), so
    ``self.log`` exists.
    """

    #: The per-run parts, rendered by Airflow and applied on top of ``training`` (see :meth:`run_spec`).
    run_input_fields: ClassVar[tuple[str, ...]] = ("dataset_uri", "hyperparameters", "validation")
    run_input_renderers: ClassVar[dict[str, str]] = {
        "training": "json",
        "hyperparameters": "json",
        "validation": "json",
    }

    training: Any
    dataset_uri: str | None
    hyperparameters: Mapping[str, Any] | str | None
    validation: Mapping[str, Any] | str | None
    mlflow_conn_id: str
    mlflow_hook: MlflowHook  # MlflowBaseOperator's
    log: Any
    task_id: str

    def run_spec(self) -> dict[str, Any]:
        """
        The rendered ``training`` as a dict with this run's parts applied: ``dataset_uri`` replaces the spec's,
        ``hyperparameters`` are merged over ``model.params``, and the ``validation`` summary (the validation
        task's XCom) becomes lineage tags on the MLflow run.
        """
        spec = self.training
        if isinstance(spec, TrainingSpec):
            spec = spec.to_dict()
        if isinstance(spec, bytes):
            spec = spec.decode("utf-8")
        if isinstance(spec, str):
            spec = load_spec_json(spec)  # the raw object: this run's parts may fill its required fields
        if not isinstance(spec, Mapping):
            raise TrainingSpecError(
                f"task {self.task_id!r}: training must be a training spec mapping, not {type(spec).__name__}."
            )
        spec = dict(spec)
        dataset_uri = optional_text(self.dataset_uri)
        if dataset_uri:
            spec["dataset_uri"] = dataset_uri
        overrides = _mapping_arg(self.hyperparameters, "hyperparameters", self.task_id)
        if overrides:
            model = spec.get("model")
            model = ModelSpec.from_obj(model).to_dict() if isinstance(model, str) else dict(model or {})
            model["params"] = {**(model.get("params") or {}), **overrides}
            spec["model"] = model
        validation = _mapping_arg(self.validation, "validation", self.task_id)
        if validation:
            tags = dict(spec.get("tags") or {})
            tags[TAG_VALIDATION] = json.dumps(validation_tag(validation), sort_keys=True, default=str)
            report = validation.get("report_html_uri") or validation.get("report_uri")
            if report:
                tags[TAG_VALIDATION_REPORT] = str(report)
            spec["tags"] = tags
        return spec

    def build_training_spec(
        self, identity: AirflowIdentity, *, default_checkpoint: bool = True
    ) -> TrainingSpec:
        """Parse the rendered spec of this run and check it; give the MLP a per-task-instance checkpoint URI."""
        spec = TrainingSpec.from_obj(self.run_spec())
        if default_checkpoint and spec.model.family is ModelFamily.TORCH_MLP and not spec.checkpoint_uri:
            spec.checkpoint_uri = default_checkpoint_uri(identity)
        spec.validate_static()
        return spec

    @staticmethod
    def identity_env(identity: AirflowIdentity) -> dict[str, str]:
        """The task identity for the entrypoint (``MLOPS_AIRFLOW_IDENTITY``) and quiet MLflow defaults."""
        import json

        return {
            IDENTITY_ENV: json.dumps(identity.to_dict(), sort_keys=True),
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "PYTHONUNBUFFERED": "1",
        }

    @staticmethod
    def training_arguments(spec: TrainingSpec) -> list[str]:
        """Arguments after the interpreter: ``-m airflow_mlops.training --spec <json>``."""
        return entrypoint_args(spec.to_json())

    @staticmethod
    def training_error(exit_code: int | None, tail: Sequence[str], where: str) -> Exception:
        """One clear error from the entrypoint's exit code and its last lines (``where``: process or pod)."""
        message = error_from_lines(list(tail))
        last = "\n".join(tail[-15:])
        if exit_code == EXIT_BAD_INPUT:
            return TrainingSpecError(
                f"the trainer rejected the spec or data: {message or 'see the log above'}. Fix the training "
                "spec or the dataset; a retry with the same input fails the same way."
            )
        if exit_code is not None and exit_code < 0:
            name = (
                signal.Signals(-exit_code).name if -exit_code in signal.valid_signals() else str(-exit_code)
            )
            reason = f"was killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
        else:
            reason = f"exited with code {exit_code}"
        detail = f": {message}" if message else ""
        return TrainingFailed(f"training {where} {reason}{detail}. Last output lines:\n{last}")

    def lineage_spec(self, summary: dict[str, Any]) -> LineageSpec:
        """The training data in, the run's logged model out; before a run: the dataset the task was given."""
        from airflow_mlops.core.openlineage import training_lineage

        if not summary and self.dataset_uri:
            summary = {"dataset_uri": self.dataset_uri}
        return training_lineage(summary, self._tracking_uri())

    def resolve_training_result(
        self, context: Context, hook: MlflowHook, spec: TrainingSpec, identity: AirflowIdentity
    ) -> dict[str, Any]:
        """Find the run tagged with this try, push the run link and return the XCom summary."""
        with hook.session() as client:
            result = find_training_run(client, experiment_name=spec.experiment, identity=identity)
        summary = result.to_summary(hook.ui_url)
        self._mlops_summary = summary
        push_link(context, MlflowTrainingRunLink, summary["run_url"])
        self.log.info(
            "Training run %s logged model %s; validation metrics %s",
            result.run_id,
            result.model_uri,
            result.metrics,
        )
        return summary


class LocalTrainModelOperator(TrainingOperatorMixin, MlflowBaseOperator):
    """
    Train a model with the training entrypoint in a local subprocess (CPU, or CUDA when the worker has it).

    The process streams its output into the task log and reaches MLflow through ``mlflow_conn_id``; killing the
    task kills it. A retry of a PyTorch MLP resumes from the last completed epoch (the checkpoint defaults to
    ``<[mlops] storage_base_uri>/checkpoints/<dag>/<run>/<task>/checkpoint.pt``), and a retry after a finished
    training reuses its MLflow run. Returns ``{"run_id", "experiment_id", "model_uri", "metrics",
    "dataset_uri", "dataset_fingerprint", "run_url"}``.

    .. code-block:: python

        train = LocalTrainModelOperator(
            task_id="train",
            training={
                "experiment": "churn",
                "dataset_uri": "s3://lake/churn/{{ dag_run.run_after | ds }}.parquet",
                "target": "churned",
                "model": {"family": "sklearn", "estimator": "sklearn.ensemble.RandomForestClassifier",
                          "params": {"n_estimators": 200}},
                "metrics": ["roc_auc", "accuracy"],
            },
        )

    :param training: The training spec: a dict, JSON string, JSON file path or TrainingSpec. Every string in a
        dict spec is rendered, so ``"checkpoint_uri": "s3://ckpt/{{ run_id }}"`` works (templated).
    :param dataset_uri: This run's training data; replaces the spec's ``dataset_uri`` (templated).
    :param hyperparameters: This run's overrides of ``model.params``: a dict, or a JSON object string such as
        ``"{{ params.hyperparameters | tojson }}"`` (templated).
    :param validation: The validation summary of the data (e.g. ``validate.output``), recorded as lineage
        tags on the MLflow run (templated).
    :param mlflow_conn_id: MLflow connection; defaults to ``[mlops] mlflow_conn_id`` (templated).
    :param python: Interpreter that runs the entrypoint; defaults to ``[mlops] training_python``, else this
        worker's Python (templated).
    :param env: Extra environment variables for the process (templated).
    :param kill_grace_seconds: Seconds between SIGTERM and SIGKILL when the task is killed.
    """

    template_fields: Sequence[str] = (
        "training",
        *TrainingOperatorMixin.run_input_fields,
        "python",
        "env",
        "mlflow_conn_id",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {
        **TrainingOperatorMixin.run_input_renderers,
        "env": "json",
    }
    operator_extra_links = (MlflowTrainingRunLink(),)
    ui_color = "#d6eaf8"

    def __init__(
        self,
        *,
        training: dict[str, Any] | str | TrainingSpec,
        dataset_uri: str | None = None,
        hyperparameters: Mapping[str, Any] | str | None = None,
        validation: Mapping[str, Any] | str | None = None,
        mlflow_conn_id: str | None = None,
        python: str | None = None,
        env: Mapping[str, str] | None = None,
        kill_grace_seconds: float = 10.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("multiple_outputs", True)  # so ``train.output["run_id"]`` works downstream
        super().__init__(mlflow_conn_id=mlflow_conn_id, **kwargs)
        if isinstance(training, TrainingSpec):
            training = training.to_dict()
        self.training = training
        self.dataset_uri = dataset_uri
        self.hyperparameters = hyperparameters
        self.validation = validation
        self.python = python
        self.env = dict(env) if env else {}
        self.kill_grace_seconds = kill_grace_seconds
        self._process: subprocess.Popen[str] | None = None

    def _interpreter(self) -> str:
        if self.python:
            python = self.python
        else:
            from airflow_mlops.settings import get_settings

            python = get_settings().training_python or sys.executable
        resolved = shutil.which(python) or (python if os.path.isfile(python) else None)
        if not resolved:
            raise MlopsConfigError(
                f"training interpreter {python!r} was not found; set python= (or [mlops] training_python) to a "
                "Python with airflow-mlops installed."
            )
        return resolved

    def _child_env(self, hook: MlflowHook, identity: AirflowIdentity, spec: TrainingSpec) -> dict[str, str]:
        from airflow_mlops.core.storage import connection_env

        env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_ENV_PREFIXES)}
        env.update({str(k): str(v) for k, v in self.env.items()})
        env.update(hook.child_env())
        # only the storage connections the spec's URIs are read and written with, not every AIRFLOW_CONN_*
        env.update(connection_env([spec.dataset_uri, spec.checkpoint_uri]))
        # A task process blocks the metadata DB with a URL SQLAlchemy cannot parse, which breaks `import airflow`
        # in a child (needed to open storage through a connection); an empty in-memory SQLite blocks it as well.
        for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__SQL_ALCHEMY_CONN"):
            if env.get(key, "").startswith("airflow-db-not-allowed"):
                env[key] = "sqlite://"
        env.update(self.identity_env(identity))
        return env

    @fail_fast
    def execute(self, context: Context) -> dict[str, Any]:
        identity = identity_from_context(context)
        spec = self.build_training_spec(identity)
        hook = self.mlflow_hook
        hook.check_reachable()
        command = [self._interpreter(), *self.training_arguments(spec)]
        self.log.info(
            "Training %s on %s (experiment %r, checkpoint %s)",
            spec.model.estimator or spec.model.family.value,
            spec.dataset_uri,
            spec.experiment,
            spec.checkpoint_uri,
        )
        exit_code, tail = self._run(command, self._child_env(hook, identity, spec))
        if exit_code != 0:
            raise self.training_error(exit_code, tail, "process")
        return self.resolve_training_result(context, hook, spec, identity)

    def _run(self, command: list[str], env: dict[str, str]) -> tuple[int, list[str]]:
        """Run ``command``, streaming its merged output into the task log; return (exit code, last lines)."""
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.log.info("::group::Training process output")
        process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            bufsize=1,
            start_new_session=True,
            preexec_fn=_die_with_parent(),  # one prctl call, looked up before the fork
        )
        self._process = process
        try:
            assert process.stdout is not None
            for line in process.stdout:
                line = line.rstrip("\n")
                tail.append(line)
                self.log.info("%s", line)
            exit_code = process.wait()
        finally:
            self.log.info("::endgroup::")
            if process.poll() is None:
                self._stop(process)
            self._process = None
        return exit_code, list(tail)

    def _stop(self, process: subprocess.Popen[str]) -> None:
        """SIGTERM the process group, then SIGKILL what is left after the grace period."""
        for sig, wait in ((signal.SIGTERM, self.kill_grace_seconds), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    return
                time.sleep(0.1)

    def on_kill(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            self.log.info("Stopping training process %s", process.pid)
            self._stop(process)
