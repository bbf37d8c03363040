"""``python -m airflow_mlops.core.scoring``: one scoring job (or shard) from the command line.

What a KubernetesPodOperator pod runs. The MLflow server and credentials come from the ``MLFLOW_*`` variables;
the exit status is 0 on success (the summary JSON on stdout) and 2 for an error a retry cannot fix.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import TYPE_CHECKING

from airflow_mlops.core import scoring
from airflow_mlops.core.scoring.model import ModelFlavor
from airflow_mlops.core.scoring.stream import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_PREDICTION_COLUMN,
    run_batch_inference,
)
from airflow_mlops.exceptions import (
    DatasetError,
    MlopsConfigError,
    ModelRegistryError,
    SchemaMismatch,
    ScoringError,
)

if TYPE_CHECKING:
    from collections.abc import Sequence


def _split(text: str) -> list[str]:
    return [part for part in (x.strip() for x in text.split(",")) if part]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m airflow_mlops.core.scoring`` (MLflow server and credentials from ``MLFLOW_*`` variables)."""
    parser = argparse.ArgumentParser(
        prog="python -m airflow_mlops.core.scoring", description=(scoring.__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--model-uri", required=True)
    parser.add_argument("--input-uri", required=True)
    parser.add_argument("--output-uri", required=True)
    parser.add_argument(
        "--input-files", default="", help="comma-separated files of the input folder (a shard)"
    )
    parser.add_argument("--passthrough", default="", help="comma-separated columns copied to the output")
    parser.add_argument("--prediction-column", default=DEFAULT_PREDICTION_COLUMN)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--flavor", default=ModelFlavor.AUTO)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from mlflow import MlflowClient

    try:
        result = run_batch_inference(
            MlflowClient(),
            args.model_uri,
            args.input_uri,
            args.output_uri,
            input_files=_split(args.input_files) or None,
            passthrough_columns=_split(args.passthrough),
            prediction_column=args.prediction_column,
            batch_size=args.batch_size,
            flavor=args.flavor,
            force=args.force,
        )
    except (DatasetError, SchemaMismatch, MlopsConfigError, ModelRegistryError, ScoringError) as err:
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_summary()))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.exit(main())
