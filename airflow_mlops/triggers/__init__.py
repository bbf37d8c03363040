"""airflow_mlops.triggers"""
