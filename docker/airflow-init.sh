#!/usr/bin/env bash
# One-shot initialisation of the compose stack, run as root by the `airflow-init` service (like the `airflow-init`
# of Airflow's official compose file): shared folders owned by AIRFLOW_UID, the admin's password for the
# SimpleAuthManager, the metadata DB migrated, and the one-slot pool that serialises champion alias moves.
# Safe to run again: every step is idempotent. tests/production/ runs this same script outside a container, with
# MLOPS_AIRFLOW_ENTRYPOINT="" (plain `airflow` from PATH) and its own AIRFLOW_HOME.
set -euo pipefail

ENTRYPOINT="${MLOPS_AIRFLOW_ENTRYPOINT-/entrypoint}"
HOME_DIR="${AIRFLOW_HOME:-/opt/airflow}"

AIRFLOW_UID="${AIRFLOW_UID:-50000}"
PASSWORDS_FILE="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:?set AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE}"
: "${_AIRFLOW_WWW_USER_USERNAME:?set _AIRFLOW_WWW_USER_USERNAME in .env}"
: "${_AIRFLOW_WWW_USER_PASSWORD:?set _AIRFLOW_WWW_USER_PASSWORD in .env}"
POOL="${AIRFLOW__MLOPS__PROMOTION_POOL:-mlops_promotion}"

mkdir -p "$HOME_DIR/logs" "$HOME_DIR/config" "$(dirname "$PASSWORDS_FILE")"

# SimpleAuthManager keeps {"user": "password"} in this file; written whole, then renamed into place.
python - "$PASSWORDS_FILE" <<'PY'
import json
import os
import sys

path = sys.argv[1]
tmp = f"{path}.tmp"
with open(tmp, "w", encoding="utf-8") as fh:
    json.dump({os.environ["_AIRFLOW_WWW_USER_USERNAME"]: os.environ["_AIRFLOW_WWW_USER_PASSWORD"]}, fh)
    fh.write("\n")
os.chmod(tmp, 0o600)
os.replace(tmp, path)
PY
echo "user ${_AIRFLOW_WWW_USER_USERNAME} (admin)"

chown -R "${AIRFLOW_UID}:0" "$HOME_DIR/logs" "$HOME_DIR/config" "$(dirname "$PASSWORDS_FILE")"

$ENTRYPOINT airflow db migrate

$ENTRYPOINT airflow pools set "$POOL" 1 "airflow-mlops: serialises champion alias moves"

chown -R "${AIRFLOW_UID}:0" "$HOME_DIR/logs"
$ENTRYPOINT airflow version
