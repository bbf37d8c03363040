"""``python -m airflow_mlops.training --spec <JSON | path>``: the training entrypoint of pods and local runs.

The Airflow task identity comes in ``MLOPS_AIRFLOW_IDENTITY`` (JSON of ``AirflowIdentity.to_dict()``), the
MLflow server and credentials in the standard ``MLFLOW_*`` variables. Exit codes: 0 trained (or reused an
earlier try's run), 2 bad spec or data (retrying will not help), 1 any other failure. The last stderr line of
a failure starts with ``MLOPS_TRAINING_ERROR`` and says what went wrong.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from airflow_mlops.core.lineage import AirflowIdentity
from airflow_mlops.core.training_result import (
    ERROR_MARKER,
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    IDENTITY_ENV,
    RESULT_MARKER,
)
from airflow_mlops.exceptions import DatasetError, MlopsConfigError, MlopsError, SchemaMismatch

log = logging.getLogger("airflow_mlops.training")


def _identity() -> AirflowIdentity | None:
    raw = os.environ.get(IDENTITY_ENV)
    if not raw:
        log.warning("%s is not set: the MLflow run carries no Airflow task identity", IDENTITY_ENV)
        return None
    try:
        data = json.loads(raw)
        return AirflowIdentity(
            dag_id=str(data["dag_id"]),
            run_id=str(data["run_id"]),
            task_id=str(data["task_id"]),
            try_number=int(data.get("try_number", 1)),
            map_index=int(data.get("map_index", -1)),
        )
    except (ValueError, KeyError, TypeError) as err:
        raise MlopsConfigError(
            f"{IDENTITY_ENV} is not the JSON of an Airflow task identity ({err}); expected keys dag_id, "
            "run_id, task_id, try_number, map_index."
        ) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airflow_mlops.training", description=__doc__)
    parser.add_argument(
        "--spec", required=True, help="training spec: a JSON object, or a path/URI of a JSON file"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    for noisy in ("mlflow", "urllib3", "alembic", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        from airflow_mlops.core.training_spec import TrainingSpec
        from airflow_mlops.training.runner import run_training

        spec = TrainingSpec.from_obj(args.spec)
        outcome = run_training(spec, _identity())
    except (MlopsConfigError, SchemaMismatch, DatasetError) as err:
        _fail(err)
        return EXIT_BAD_INPUT
    except MlopsError as err:
        _fail(err)
        return EXIT_FAILED
    except Exception as err:
        log.exception("Training failed")
        _fail(err)
        return EXIT_FAILED
    print(
        f"{RESULT_MARKER} "
        + json.dumps({"run_id": outcome.run_id, "model_uri": outcome.model_uri, "reused": outcome.reused}),
        flush=True,
    )
    return 0


def _fail(err: BaseException) -> None:
    sys.stdout.flush()
    message = " ".join(str(err).split()) or type(err).__name__
    print(f"{ERROR_MARKER} {type(err).__name__}: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
