"""Checks that Airflow workers reach the MLflow tracking server configured as ``[mlops] mlflow_conn_id``.

Trigger it from the UI after setting up the ``mlflow_default`` connection; it fails with the reason
(unreachable server, bad credentials, malformed connection) when the connection does not work.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task


@dag(
    dag_id="mlops_connection_check",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["mlops", "setup"],
    params={"mlflow_conn_id": "mlflow_default"},
)
def mlops_connection_check():
    @task
    def check_mlflow(params=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from airflow_mlops.hooks.mlflow import MlflowHook

        hook = MlflowHook((params or {}).get("mlflow_conn_id") or "mlflow_default")
        ok, message = hook.test_connection()
        if not ok:
            raise AirflowFailException(message)
        return {"tracking_uri": hook.tracking_uri, "message": message}

    check_mlflow()


mlops_connection_check()
