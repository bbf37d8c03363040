"""Writes the example churn data under [mlops] storage_base_uri so the churn lifecycle DAGs have input.

Trigger it once from the UI: it writes train.parquet, train_recent.parquet and a scoring batch for the run's
date (``batches/<YYYY-MM-DD>.parquet``: the logical date, or the trigger date of a run without one, which is
what the churn inference DAG reads; set ``drifted`` to make that batch drift).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Param, dag, task


@dag(
    dag_id="mlops_example_data",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["mlops", "example"],
    params={"drifted": Param(False, type="boolean", description="Make the day's batch drift")},
)
def mlops_example_data():
    @task
    def write_data(dag_run=None, params=None) -> dict:
        from airflow_mlops.core.storage import atomic_local_path, join_uri
        from airflow_mlops.settings import get_settings
        from airflow_mlops.templates.example_data import TARGET, make_churn_frame, write_example_data
        from airflow_mlops.templates.macros import run_date

        day = run_date(dag_run)  # runs triggered with logical_date: null have no `ds`
        base = join_uri(get_settings().storage_base_uri, "example", "churn")
        uris = write_example_data(base)
        drifted = bool((params or {}).get("drifted"))
        batch = make_churn_frame(
            2000,
            seed=int(day.replace("-", "")) % 10_000,
            drift=1.0 if drifted else 0.0,
            id_offset=500_000,
        )
        uri = join_uri(base, "batches", f"{day}.parquet")
        with atomic_local_path(uri, suffix=".parquet") as tmp:
            batch.drop(columns=[TARGET]).to_parquet(tmp, index=False)
        return {**uris, "batch": uri}

    write_data()


mlops_example_data()
