"""The churn lifecycle with Kubernetes GPU training, built from churn_gpu_lifecycle.yaml (training, inference, retraining DAGs).

To add a model to a DAG repo, copy both files and edit the YAML: a broken YAML becomes an import error of
this file only, naming the YAML file and the field.
"""

from airflow_mlops.templates import dags_from_yaml

globals().update(dags_from_yaml(__file__.replace(".py", ".yaml")))
