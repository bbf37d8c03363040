"""The engine: framework-free functions over data, models and reports. Never imports Airflow."""
