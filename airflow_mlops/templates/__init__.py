"""airflow_mlops.templates"""
