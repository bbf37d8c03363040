#!/usr/bin/env bash
# Run by the postgres image on the first start of its volume (/docker-entrypoint-initdb.d): creates MLflow's role
# and database next to Airflow's. Idempotent. Values come from the service's environment (see docker-compose.yaml).
set -eo pipefail

: "${MLFLOW_DB_USER:?}" "${MLFLOW_DB_PASSWORD:?}" "${MLFLOW_DB_NAME:?}"

psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
    -v db_user="$MLFLOW_DB_USER" -v db_password="$MLFLOW_DB_PASSWORD" -v db_name="$MLFLOW_DB_NAME" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'db_user', :'db_password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'db_user') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db_name', :'db_user')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db_name') \gexec
SQL
