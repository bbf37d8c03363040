"""The demo lifecycle on the embedded default (``./dev demo``).

The full story (train -> register -> gate -> score -> drift -> retrain) is assembled by the lifecycle
templates. Until every stage exists this says plainly which are missing and exits non-zero: it never pretends.
"""

from __future__ import annotations

import importlib.util
import sys

STAGES = {
    "validation (Great Expectations)": "airflow_mlops.operators.validation",
    "training (local + Kubernetes)": "airflow_mlops.operators.training",
    "registry gate (MLflow aliases)": "airflow_mlops.operators.mlflow",
    "batch inference": "airflow_mlops.operators.inference",
    "drift detection (Evidently)": "airflow_mlops.operators.drift",
    "lifecycle templates and demo runner": "airflow_mlops.templates.demo",
}


def main(argv: list[str] | None = None) -> int:
    missing = [name for name, module in STAGES.items() if importlib.util.find_spec(module) is None]
    if missing:
        print("airflow-mlops demo: not available yet. These stages are not built:", file=sys.stderr)
        for name in missing:
            print(f"  - {name}", file=sys.stderr)
        print("Nothing was run. `./dev test` runs what exists.", file=sys.stderr)
        return 3
    from airflow_mlops.templates.demo import run_demo

    return int(run_demo(argv if argv is not None else sys.argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
