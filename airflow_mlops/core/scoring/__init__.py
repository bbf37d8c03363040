"""Streaming batch inference: score a dataset of any size with one registered model version, exactly once.

Framework-free (no Airflow; heavy libraries imported where they are used). One job is:

1. resolve ``models:/<name>@<alias>`` (or ``/<version>``, ``/latest``) to one concrete version, once
   (:mod:`.refs`, on the registry's lookups);
2. skip the work when the manifest at the output proves the same input and model version were already scored
   (:mod:`.manifest`);
3. download and load the model once, in its native flavor (sklearn, pytorch) when it has one, pyfunc otherwise
   (:mod:`.model`);
4. check the input schema (every file's) against the model signature before anything is written (:mod:`.schema`);
5. stream Arrow record batches (bounded memory), predict, and write predictions plus passthrough columns to a
   hidden temporary file beside the output; rename it into place when complete (:mod:`.stream`);
6. write the manifest last (rows, model name/version/run, input fingerprint, output schema, elapsed).

Sharding (:mod:`.shards`): :func:`plan_shards` splits a dataset folder into groups of files (one mapped task
each, every shard pinned to the same model version), and :func:`combine_shards` checks the per-shard manifests
and writes the manifest of the combined dataset. ``python -m airflow_mlops.core.scoring`` runs one scoring job
(or shard) from the command line, which is what a KubernetesPodOperator pod runs (:mod:`.__main__`).
"""

from __future__ import annotations

from airflow_mlops.core.scoring.manifest import (
    MANIFEST_FORMAT,
    ScoringResult,
    manifest_uri_for,
    remove_stale_temporaries,
)
from airflow_mlops.core.scoring.model import (
    FeatureSpec,
    LoadedModel,
    ModelFlavor,
    load_model,
    quiet_skops_type_scan,
)
from airflow_mlops.core.scoring.refs import ModelRef, parse_model_uri, resolve_model
from airflow_mlops.core.scoring.schema import (
    bad_values_error,
    check_input_schema,
    removing_new_folders_on_error,
)
from airflow_mlops.core.scoring.shards import (
    COMBINED_MANIFEST_NAME,
    PART_TEMPLATE,
    CombinedResult,
    ShardSpec,
    combine_shards,
    plan_shards,
)
from airflow_mlops.core.scoring.stream import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_PREDICTION_COLUMN,
    DEFAULT_PROGRESS_INTERVAL,
    run_batch_inference,
    score_dataset,
)

__all__ = [
    "COMBINED_MANIFEST_NAME",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_PREDICTION_COLUMN",
    "DEFAULT_PROGRESS_INTERVAL",
    "MANIFEST_FORMAT",
    "PART_TEMPLATE",
    "CombinedResult",
    "FeatureSpec",
    "LoadedModel",
    "ModelFlavor",
    "ModelRef",
    "ScoringResult",
    "ShardSpec",
    "bad_values_error",
    "check_input_schema",
    "combine_shards",
    "load_model",
    "manifest_uri_for",
    "parse_model_uri",
    "plan_shards",
    "quiet_skops_type_scan",
    "remove_stale_temporaries",
    "removing_new_folders_on_error",
    "resolve_model",
    "run_batch_inference",
    "score_dataset",
]
