# syntax=docker/dockerfile:1
# The Airflow image of the compose stack: Apache Airflow's official image with airflow-mlops installed, pinned by
# constraints.txt so the image runs the versions the test suite ran. Build from the repository root:
#
#   docker build -f docker/airflow.Dockerfile -t airflow-mlops/airflow:local .
#   docker build -f docker/airflow.Dockerfile --build-arg MLOPS_EXTRAS=torch ...   # + PyTorch for local training
#
# AIRFLOW_VERSION must stay equal to the apache-airflow pin in constraints.txt (tests/test_compose.py checks it).
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}

ARG AIRFLOW_VERSION
# Optional extras of airflow-mlops, comma separated (e.g. "torch").
ARG MLOPS_EXTRAS=""

# The official image installs Python packages as the airflow user.
USER airflow
COPY --chown=airflow:0 pyproject.toml README.md constraints.txt /opt/airflow-mlops/src/
COPY --chown=airflow:0 airflow_mlops /opt/airflow-mlops/src/airflow_mlops
# apache-airflow is named so pip never moves Airflow itself. The s3, celery and postgres extras are the production
# topology's: the Amazon provider with s3fs (s3:// storage through the aws connection), the Celery provider with
# Redis, and psycopg2, all at the versions constraints.txt pins (the ones tests/production/ ran).
RUN pip install --no-cache-dir --constraint /opt/airflow-mlops/src/constraints.txt \
        "apache-airflow==${AIRFLOW_VERSION}" \
        "/opt/airflow-mlops/src[s3,celery,postgres${MLOPS_EXTRAS:+,${MLOPS_EXTRAS}}]" \
    && python -c "import airflow_mlops, s3fs, airflow.providers.amazon, airflow.providers.celery; print('airflow-mlops', airflow_mlops.__version__)"

# One-shot initialisation run by the compose service `airflow-init`.
COPY --chown=airflow:0 docker/airflow-init.sh /opt/airflow-mlops/airflow-init.sh
