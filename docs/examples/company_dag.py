"""A company DAG that embeds the airflow-mlops training stage, overrides a step and adds its own task."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from airflow.sdk import DAG, task

from airflow_mlops.templates import DataConfig, GateConfig, LifecycleConfig, TrainingConfig
from airflow_mlops.templates.builders import build_training_group

# 1. A config (could also come from LifecycleConfig.from_yaml("models/churn.yaml")).
base = LifecycleConfig(
    model_name="churn_company",
    data=DataConfig(train_uri="/data/lake/churn/train.parquet"),
    training=TrainingConfig(
        spec={
            "target": "churned",
            "features": ["tenure_months", "monthly_charges", "support_calls", "contract_years"],
            "model": {"family": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression"},
            "metrics": ["roc_auc"],
        }
    ),
    gate=GateConfig(floors=[{"metric": "val_roc_auc", "min": 0.5}]),
)

# 2. Override a step: same lifecycle, another estimator (configs are frozen; derive, never mutate).
cfg = dataclasses.replace(
    base,
    training=dataclasses.replace(
        base.training,
        spec={**base.training.spec, "model": {"family": "sklearn",
                                              "estimator": "sklearn.ensemble.RandomForestClassifier",
                                              "params": {"n_estimators": 50, "max_depth": 6}}},
    ),
)  # fmt: skip

with DAG(
    "company_churn_training",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["company"],
) as dag:
    # 3. Embed the stage as a TaskGroup ...
    training = build_training_group(cfg, group_id="train_churn")

    # 4. ... and add your own task after it.
    @task
    def notify_owners(ti=None) -> dict:
        decision = ti.xcom_pull(task_ids="train_churn.promote")
        return {"model": "churn_company", "version": decision["version"], "decision": decision["decision"]}

    training >> notify_owners()
