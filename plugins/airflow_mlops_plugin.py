from airflow_mlops.plugins import MlopsPlugin  # noqa: F401  (shim: $AIRFLOW_HOME/plugins picks the plugin up)
