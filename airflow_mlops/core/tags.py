"""Every MLflow tag and metadata key the provider writes, in one place.

The keys are a stored contract: runs, model versions and registered models written by one release are read by
the next (the gate's decision, the alias history, the drift state), and people filter on them in the MLflow UI.
Never rename a value here; add a new key and read both. This module imports nothing, so any layer may use it.
"""

from __future__ import annotations

#: Every key below starts with this prefix (``mlops.``), so users can tell the provider's tags from their own.
TAG_PREFIX = "mlops."

# ---------------------------------------------------------------- Airflow lineage (run tags)
TAG_DAG_ID = "mlops.airflow.dag_id"
TAG_RUN_ID = "mlops.airflow.run_id"
TAG_TASK_ID = "mlops.airflow.task_id"
TAG_TRY_NUMBER = "mlops.airflow.try_number"
TAG_MAP_INDEX = "mlops.airflow.map_index"
TAG_TI_KEY = "mlops.airflow.ti_key"  # dag_id/run_id/task_id/map_index: stable across tries

# ---------------------------------------------------------------- data lineage (run and model-version tags)
TAG_DATASET_URI = "mlops.data.uri"
TAG_DATASET_FINGERPRINT = "mlops.data.fingerprint"
TAG_VALIDATION = "mlops.data.validation"  # small JSON summary of the validation result
TAG_VALIDATION_REPORT = "mlops.data.validation_report"

# ---------------------------------------------------------------- training (run tags the trainer writes)
TAG_TRAINING_RUN = "mlops.training.run_id"
TAG_SPEC = "mlops.training.spec"
TAG_MODEL_URI = "mlops.training.model_uri"
TAG_MODEL_FAMILY = "mlops.training.family"
TAG_TASK = "mlops.training.task"
TAG_CLASSES = "mlops.training.classes"
TAG_RESUMED_FROM_EPOCH = "mlops.training.resumed_from_epoch"
TAG_PRECISION = "mlops.training.precision"

# ---------------------------------------------------------------- registry and gate (model-version tags)
TAG_REGISTRY_KEY = "mlops.registry.key"
TAG_GATE_DECISION = "mlops.gate.decision"
TAG_GATE_REASONS = "mlops.gate.reasons"
TAG_GATE_RULES = "mlops.gate.rules"
TAG_GATE_CHAMPION = "mlops.gate.compared_to"
TAG_GATE_AT = "mlops.gate.at"
TAG_GATE_BY = "mlops.gate.by"
#: The human decision of an approval gate: {"approved", "approver", "reason", "at", "by"} (by: the task instance).
TAG_GATE_APPROVAL = "mlops.gate.approval"

# ---------------------------------------------------------------- summaries (registered-model tags, for the Models view)
# Small JSON copies of the newest event of each kind, so that a list of many models is one registry call.
# The registered model also carries TAG_DAG_ID: the DAG that registered its newest version (who may see it).
TAG_GATE_LAST = "mlops.gate.last"  # {"version", "decision", "at", "compared_to", "reasons"}
TAG_TRAINING_LAST = "mlops.training.last"  # {"version", "run_id", "dag_id", "airflow_run_id", "at"}

# ---------------------------------------------------------------- alias history (registered-model tags)
HISTORY_TAG_PREFIX = "mlops.history."  # + sequence number; JSON of one alias move
TAG_ALIAS_MOVE = "mlops.alias_move"  # on a ledger experiment: the claimed move

# ---------------------------------------------------------------- drift
TAG_DRIFT_STATE = "mlops.drift.state"  # registered-model tag: the policy state (JSON)
TAG_DRIFT_MODEL = "mlops.drift.model"  # history-run tags
TAG_DRIFT_VERSION = "mlops.drift.model_version"
TAG_DRIFT_LAST = "mlops.drift.last_check"  # model-version tag: small JSON of the latest check
TAG_DRIFT_REPORT_URI = "mlops.drift.report_uri"
TAG_DRIFT_REFERENCE_URI = "mlops.drift.reference_uri"
TAG_DRIFT_CURRENT_URI = "mlops.drift.current_uri"
TAG_DRIFT_REFERENCE_FINGERPRINT = "mlops.drift.reference_fingerprint"
TAG_DRIFT_CURRENT_FINGERPRINT = "mlops.drift.current_fingerprint"
TAG_DRIFT_COLUMNS = "mlops.drift.drifted_columns"
TAG_DRIFT_THRESHOLD = "mlops.drift.share_threshold"  # history-run tag: the drift share that counts as drift
TAG_DRIFT_DECISION = (
    "mlops.drift.decision"  # history-run tag: the policy's decision (JSON emit/confirmed/reason)
)

# ---------------------------------------------------------------- scoring (Parquet file metadata key, bytes)
PARQUET_MODEL_KEY = b"mlops.model"  # "<name>/<version>" of the model that wrote the predictions

#: Run tags copied onto the model version at registration.
LINEAGE_RUN_TAGS = (TAG_DATASET_URI, TAG_DATASET_FINGERPRINT, TAG_VALIDATION, TAG_VALIDATION_REPORT)

#: Tags the trainer writes itself; a training spec may not override them.
RESERVED_TAGS = frozenset(
    {
        TAG_DAG_ID,
        TAG_RUN_ID,
        TAG_TASK_ID,
        TAG_TRY_NUMBER,
        TAG_MAP_INDEX,
        TAG_TI_KEY,
        TAG_DATASET_URI,
        TAG_DATASET_FINGERPRINT,
        TAG_SPEC,
        TAG_MODEL_URI,
        TAG_MODEL_FAMILY,
        TAG_TASK,
        TAG_CLASSES,
        TAG_RESUMED_FROM_EPOCH,
    }
)
