"""What the operator and sensor unit tests share: a local MLflow store and a minimal Airflow task context.

* :class:`LocalMlflow` is a real MLflow tracking store and model registry in one SQLite file (no server). MLflow
  migrates a new database in seconds, so :func:`local_mlflow` makes one per test process; tests keep apart by
  using their own registered model and experiment names. Every experiment made here has its artifact location
  under the store's folder (the default would be ``./mlruns`` in the working directory).
* :class:`Runtime` stands in for the parts of Airflow's task runtime that ``execute`` reads: ``ti`` (identity
  and ``xcom_push``), ``dag_run`` (``run_after``/``start_date``), ``outlet_events`` (records ``.add(...)`` and
  ``.extra``) and ``inlet_events`` (reads back what earlier contexts of the same runtime added, which is how
  ``emitted_before`` sees the events of an earlier try). Nothing of the operators or the core is faked.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

UI_URL = "http://mlflow.test"
FEATURES = ["a", "b"]
_STORE: LocalMlflow | None = None


# ------------------------------------------------------------------------------------------ data and names
def feature_frame(rows: int = 60, seed: int = 0, shift: float = 0.0) -> pd.DataFrame:
    """Two numeric features ``a``, ``b`` (``shift`` moves both means) and an ``id`` column."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(loc=shift, size=(rows, 2)), columns=FEATURES)
    frame.insert(0, "id", np.arange(rows, dtype="int64") + 1000 * seed)
    return frame


def unique_name(test_name: str) -> str:
    """A registered model / experiment name of its own for one test."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", test_name).strip("-")[:50]
    return f"{stem}-{uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------------------------------ the MLflow store
@contextlib.contextmanager
def _fluent(uri: str):
    """MLflow's fluent API on ``uri`` for one block; the previous global URIs come back afterwards."""
    import mlflow
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils

    saved = tracking_utils._tracking_uri, registry_utils._registry_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        tracking_utils._tracking_uri, registry_utils._registry_uri = saved


@dataclass(frozen=True)
class LoggedRun:
    run_id: str
    experiment_id: str
    model_id: str


class LocalMlflow:
    """A migrated SQLite MLflow store (tracking + registry) under ``root`` and a tiny fitted sklearn model."""

    def __init__(self, root: Path) -> None:
        from mlflow import MlflowClient
        from sklearn.linear_model import LogisticRegression

        self.root = root
        self.uri = f"sqlite:///{root / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        self.client.search_experiments(max_results=1)  # runs the migrations once
        self.client.search_registered_models(max_results=1)
        train = feature_frame(rows=200, seed=42)
        self.model = LogisticRegression().fit(train[FEATURES], (train["a"] + train["b"] > 0).astype("int64"))

    def connection_json(self, **extra: Any) -> str:
        return json.dumps({"conn_type": "mlflow", "host": self.uri, "extra": {"ui_url": UI_URL, **extra}})

    def experiment(self, name: str) -> str:
        """The id of experiment ``name``, created with its artifacts under the store's folder."""
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        location = self.root / "artifacts" / re.sub(r"[^A-Za-z0-9_-]+", "_", name)
        return str(self.client.create_experiment(name, artifact_location=location.as_uri()))

    def log_model_run(
        self, experiment: str, *, metrics: dict[str, float] | None = None, tags: dict[str, str] | None = None
    ) -> LoggedRun:
        """A finished run of ``experiment`` that logged the sklearn model as ``model`` (with a signature)."""
        import mlflow
        import mlflow.sklearn
        from mlflow.models import infer_signature

        experiment_id = self.experiment(experiment)
        example = feature_frame(rows=5)[FEATURES]
        signature = infer_signature(example, self.model.predict(example))
        with _fluent(self.uri), mlflow.start_run(experiment_id=experiment_id) as run:
            if metrics:
                mlflow.log_metrics(metrics)
            if tags:
                mlflow.set_tags(tags)
            # cloudpickle: skops' first import scans every sklearn estimator (seconds); the loaders read both
            info = mlflow.sklearn.log_model(
                self.model,
                name="model",
                signature=signature,
                serialization_format="cloudpickle",
                pip_requirements=["scikit-learn", "cloudpickle"],
            )
        return LoggedRun(run.info.run_id, experiment_id, info.model_id)

    def register(self, name: str, run: LoggedRun, **tags: str) -> str:
        """A READY version of ``name`` from ``run``'s model (straight through the client: test set-up)."""
        with contextlib.suppress(Exception):
            self.client.create_registered_model(name)
        mv = self.client.create_model_version(
            name, f"models:/{run.model_id}", run_id=run.run_id, model_id=run.model_id, tags=tags or None
        )
        return str(mv.version)

    def aliases(self, name: str) -> dict[str, str]:
        return {k: str(v) for k, v in self.client.get_registered_model(name).aliases.items()}

    def versions(self, name: str) -> list[str]:
        return sorted(
            (str(mv.version) for mv in self.client.search_model_versions(f"name = '{name}'")), key=int
        )


def local_mlflow(root_factory: Any) -> LocalMlflow:
    """The process's one LocalMlflow (``root_factory`` makes its folder the first time)."""
    global _STORE
    if _STORE is None:
        _STORE = LocalMlflow(Path(root_factory()))
    return _STORE


# ------------------------------------------------------------------------------------------ the task runtime
def _event_key(obj: Any) -> str:
    """Events are grouped by what they were added through: an AssetAlias or an Asset, by name."""
    return f"{type(obj).__name__}:{getattr(obj, 'name', obj)}"


@dataclass(frozen=True)
class RecordedEvent:
    through: str  # _event_key of the outlet the event was added through
    asset: Any
    extra: dict[str, Any]
    timestamp: datetime


class _OutletAccessor:
    def __init__(self, runtime: Runtime, key: str) -> None:
        self._runtime = runtime
        self._key = key
        self.extra: dict[str, Any] = {}

    def add(self, asset: Any, extra: dict[str, Any] | None = None) -> None:
        self._runtime.events.append(RecordedEvent(self._key, asset, dict(extra or {}), datetime.now(UTC)))


class FakeOutletEvents:
    """``context["outlet_events"]``: ``events[outlet].add(asset, extra=...)`` and ``events[outlet].extra = ...``."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self.accessors: dict[str, _OutletAccessor] = {}

    def __getitem__(self, outlet: Any) -> _OutletAccessor:
        key = _event_key(outlet)
        return self.accessors.setdefault(key, _OutletAccessor(self._runtime, key))


class _EventQuery:
    """The chainable read-back of ``context["inlet_events"][alias]``: ``after``, ``ascending``, ``limit``."""

    def __init__(self, events: list[RecordedEvent]) -> None:
        self._events = events

    def after(self, iso: str) -> _EventQuery:
        since = datetime.fromisoformat(iso)
        return _EventQuery([e for e in self._events if e.timestamp >= since])

    def ascending(self, ascending: bool = True) -> _EventQuery:
        return _EventQuery(sorted(self._events, key=lambda e: e.timestamp, reverse=not ascending))

    def limit(self, count: int) -> _EventQuery:
        return _EventQuery(self._events[:count])

    def __iter__(self):
        return iter(self._events)


class FakeInletEvents:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def __getitem__(self, inlet: Any) -> _EventQuery:
        key = _event_key(inlet)
        return _EventQuery([e for e in self._runtime.events if e.through == key])


@dataclass
class FakeTI:
    """The task instance as ``execute`` sees it: identity and ``xcom_push`` (recorded)."""

    dag_id: str
    run_id: str
    task_id: str
    try_number: int = 1
    map_index: int = -1
    pushes: list[tuple[str, Any]] = field(default_factory=list)

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushes.append((key, value))

    def pushed(self, key: str) -> Any:
        """The last value pushed under ``key``; KeyError when none was."""
        values = [value for k, value in self.pushes if k == key]
        if not values:
            raise KeyError(f"nothing was pushed under {key!r}; pushed: {[k for k, _ in self.pushes]}")
        return values[-1]


@dataclass
class Runtime:
    """One DAG run: builds task contexts that share the run's asset events (tries see each other's events)."""

    dag_id: str = "unit_dag"
    run_id: str = "manual__unit"
    events: list[RecordedEvent] = field(default_factory=list)
    run_after: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(minutes=1))

    def context(self, task_id: str, *, try_number: int = 1, map_index: int = -1) -> dict[str, Any]:
        ti = FakeTI(self.dag_id, self.run_id, task_id, try_number=try_number, map_index=map_index)
        dag_run = _FakeDagRun(self.dag_id, self.run_id, self.run_after, self.run_after)
        return {
            "ti": ti,
            "task_instance": ti,
            "dag_run": dag_run,
            "run_id": self.run_id,
            "outlet_events": FakeOutletEvents(self),
            "inlet_events": FakeInletEvents(self),
        }

    def added(self, through: Any) -> list[RecordedEvent]:
        """The events added through ``through`` (an AssetAlias or Asset) so far."""
        key = _event_key(through)
        return [e for e in self.events if e.through == key]


@dataclass(frozen=True)
class _FakeDagRun:
    dag_id: str
    run_id: str
    run_after: datetime
    start_date: datetime
