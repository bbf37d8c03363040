"""airflow_mlops.sensors"""
