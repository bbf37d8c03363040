# syntax=docker/dockerfile:1
# The MLflow tracking server of the compose stack: MLflow at the version pinned in constraints.txt, with the
# PostgreSQL driver (backend store) and boto3 (S3/MinIO artifact destination behind the server's proxy).
#
#   docker build -f docker/mlflow.Dockerfile -t airflow-mlops/mlflow:local .
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim-bookworm

COPY constraints.txt /tmp/constraints.txt
RUN pip install --no-cache-dir --constraint /tmp/constraints.txt \
        mlflow "psycopg2-binary>=2.9,<3" "boto3>=1.34,<2" \
    && rm /tmp/constraints.txt \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin mlflow

USER mlflow
WORKDIR /home/mlflow
ENV MLFLOW_DISABLE_TELEMETRY=true
EXPOSE 5000
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]
