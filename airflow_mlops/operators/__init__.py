"""Airflow operators of airflow-mlops: thin adapters over ``airflow_mlops.core``."""
