"""The training entrypoint run by a Kubernetes pod or a local process (``python -m airflow_mlops.training``).

Never imports Airflow.
"""
