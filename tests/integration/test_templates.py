"""Config-driven lifecycles: YAML files become DAGs; a broken file is an import error of that file only;
Params are validated; and the README's extension example (embed a stage, override a step, add a task) runs."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DAGS = Path(__file__).resolve().parents[2] / "dags"


def _copy_model(folder: Path, stem: str, yaml_text: str) -> None:
    (folder / f"{stem}.py").write_text((DAGS / "churn_lifecycle.py").read_text())
    (folder / f"{stem}.yaml").write_text(yaml_text)


def test_broken_yaml_breaks_only_its_own_file(tmp_path, airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    good = (DAGS / "churn_lifecycle.yaml").read_text()
    _copy_model(tmp_path, "churn", good)
    _copy_model(tmp_path, "fraud", good.replace("model_name: churn", "model_name: fraud"))
    _copy_model(tmp_path, "broken", good.replace("model_name: churn", "model_name: broken")
                .replace("backend: local", "backend: slurm"))  # fmt: skip
    _copy_model(tmp_path, "typo", good.replace("model_name: churn", "model_name: typo")
                .replace("  on_reject: warn", "  on_rejekt: warn"))  # fmt: skip
    bag = DagBag(dag_folder=str(tmp_path))
    errors = {Path(k).name: v for k, v in bag.import_errors.items()}
    assert set(errors) == {"broken.py", "typo.py"}
    assert (
        "broken.yaml: training.backend: must be one of ['local', 'kubernetes'], got 'slurm'"
        in errors["broken.py"]
    )
    assert "typo.yaml: gate: unknown key(s) ['on_rejekt']" in errors["typo.py"]
    assert {"churn_training", "churn_inference", "churn_retraining", "fraud_training"} <= set(bag.dag_ids)
    assert not any(d.startswith(("broken", "typo")) for d in bag.dag_ids)


def test_lifecycle_dags_shape_and_params():
    from airflow_mlops.assets import drift_asset
    from airflow_mlops.templates import LifecycleConfig, build_lifecycle

    cfg = LifecycleConfig.from_yaml(DAGS / "churn_lifecycle.yaml")
    dags = build_lifecycle(cfg)
    assert set(dags) == {"churn_training", "churn_inference", "churn_retraining"}
    training = dags["churn_training"]
    assert [t.task_id for t in training.topological_sort()][:4] == [
        "training.validate_data", "training.train", "training.register", "training.promote",
    ]  # fmt: skip
    assert set(training.params) == {"train_uri", "hyperparameters", "force_promote", "force_reason"}
    retraining = dags["churn_retraining"]
    assert drift_asset("churn") in retraining.timetable.asset_condition.objects
    inference = dags["churn_inference"]
    assert [t.task_id for t in inference.topological_sort()] == [
        "inference.validate_batch", "inference.score", "inference.detect_drift",
    ]  # fmt: skip


def test_bad_params_are_rejected_before_any_task(airflow_db):
    from airflow.sdk.exceptions import ParamValidationError

    from airflow_mlops.templates import LifecycleConfig, build_lifecycle

    dag = build_lifecycle(LifecycleConfig.from_yaml(DAGS / "churn_lifecycle.yaml"))["churn_training"]
    params = copy.deepcopy(dag.params)
    with pytest.raises(ParamValidationError, match="hyperparameters"):
        params["hyperparameters"] = "fast"  # what a UI trigger with a wrong type submits
        params.validate()
    params = copy.deepcopy(dag.params)
    params["force_promote"] = True
    assert params.validate()["force_promote"] is True


def test_extension_example_runs(airflow_db, mlflow_server, tmp_path, monkeypatch):
    """The example from docs/templates.md: embed the training stage, override its spec, add a task."""
    from tests.helpers.airflow import run_dag
    from tests.helpers.xcom import xcom

    monkeypatch.setenv("AIRFLOW__MLOPS__STORAGE_BASE_URI", str(tmp_path))
    from airflow_mlops.settings import get_settings

    get_settings.cache_clear()
    try:
        from airflow_mlops.templates.example_data import make_churn_frame

        make_churn_frame(1500, seed=3).to_parquet(tmp_path / "train.parquet")
        namespace: dict = {}
        example = (Path(__file__).resolve().parents[2] / "docs" / "examples" / "company_dag.py").read_text()
        exec(compile(example.replace("/data/lake/churn/train.parquet", str(tmp_path / "train.parquet")),
                     "company_dag.py", "exec"), namespace)  # fmt: skip
        dag = namespace["dag"]
        assert "notify_owners" in dag.task_ids
        dag_run = run_dag(dag)
        promote = xcom(dag_run, "train_churn.promote")
        assert promote["promoted"] is True
        from tests.helpers.airflow import task_states

        note = xcom(dag_run, "notify_owners")
        assert note is not None, (task_states(dag_run), dag_run.task_errors)
        assert note == {
            "model": "churn_company",
            "version": promote["version"],
            "decision": promote["decision"],
        }
    finally:
        get_settings.cache_clear()


def test_without_a_gate_section_a_no_skill_model_never_becomes_champion(tmp_path, airflow_db, mlflow_server):
    """The documented default gate: labels that are pure noise give val_roc_auc ~0.5 < 0.65, so no champion."""
    import uuid

    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient

    from airflow_mlops.templates import LifecycleConfig
    from airflow_mlops.templates.builders import build_training_dag
    from tests.helpers.airflow import run_dag
    from tests.helpers.xcom import xcom

    rng = np.random.default_rng(5)
    frame = pd.DataFrame(rng.normal(size=(800, 4)), columns=["a", "b", "c", "d"])
    frame["y"] = rng.integers(0, 2, 800)  # independent of the features
    frame.to_parquet(tmp_path / "noise.parquet", index=False)
    name = f"noskill_{uuid.uuid4().hex[:6]}"
    cfg = LifecycleConfig.from_dict(
        {
            "model_name": name,
            "data": {"train_uri": str(tmp_path / "noise.parquet")},
            "training": {"spec": {"target": "y", "model": "sklearn.linear_model.LogisticRegression"}},
        }
    )
    assert cfg.gate.is_default
    dag_run = run_dag(build_training_dag(cfg))
    decision = xcom(dag_run, "training.promote")
    assert decision["decision"] == "rejected", decision
    assert any("min 0.65: fail" in reason for reason in decision["reasons"]), decision["reasons"]
    assert "champion" not in MlflowClient(mlflow_server.url).get_registered_model(name).aliases
