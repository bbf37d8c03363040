"""DAG parse time: the example DAG files in dags/ vs bare DAG files with the same number of tasks.

Each example file is parsed in a fresh interpreter (``DagBag`` on that one file, what the dag-processor does),
and so is a generated bare file with the same DAGs and task counts made of ``EmptyOperator``s. The time is the
``DagBag`` load of the file alone (the interpreter's own start and ``import airflow`` are excluded, since every
parse in a dag-processor already has them); best of N per file. The ratio is ours / bare.

Run: ``python bench/dag_parse.py`` (``MLOPS_BENCH_PARSE_REPEAT`` sets N, default 5).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import emit

ROOT = Path(__file__).resolve().parent.parent
DAGS = ROOT / "dags"
REPEAT = int(os.environ.get("MLOPS_BENCH_PARSE_REPEAT", "5"))

_PARSE = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
import airflow  # noqa: F401  (paid by every dag-processor once, not per file)
from airflow.dag_processing.dagbag import DagBag
start = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1], safe_mode=False)
elapsed = time.perf_counter() - start
print(json.dumps({"s": elapsed, "errors": {k: str(v)[:300] for k, v in bag.import_errors.items()},
                  "tasks": {d.dag_id: len(d.tasks) for d in bag.dags.values()}}))
"""


def parse(path: Path, env: dict[str, str]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _PARSE, str(path)], capture_output=True, text=True, env=env, cwd=ROOT
    )
    if proc.returncode != 0:
        raise RuntimeError(f"parsing {path} failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def bare_file(tasks: dict[str, int], path: Path) -> None:
    lines = [
        "from datetime import datetime",
        "from airflow.providers.standard.operators.empty import EmptyOperator",
        "from airflow.sdk import DAG",
    ]
    for i, (dag_id, count) in enumerate(sorted(tasks.items())):
        lines += [
            f"with DAG({('bare_' + dag_id)!r}, schedule=None, start_date=datetime(2026, 1, 1)) as dag_{i}:",
            f"    ops = [EmptyOperator(task_id=f't{{j}}') for j in range({count})]",
            "    for a, b in zip(ops, ops[1:]):",
            "        a >> b",
        ]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    files = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))
    with tempfile.TemporaryDirectory(prefix="mlops-bench-parse-") as tmp:
        home = Path(tmp) / "home"
        (home / "dags").mkdir(parents=True)
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__MLOPS__STORAGE_BASE_URI": str(Path(tmp) / "storage"),
        }
        ours_total = bare_total = 0.0
        results: dict[str, object] = {}
        n_tasks = 0
        for path in files:
            runs = [parse(path, env) for _ in range(REPEAT)]
            if runs[0]["errors"]:
                raise RuntimeError(f"{path.name} has import errors: {runs[0]['errors']}")
            tasks = runs[0]["tasks"]
            bare = Path(tmp) / f"bare_{path.name}"
            bare_file(tasks, bare)
            bare_runs = [parse(bare, env) for _ in range(REPEAT)]
            ours_s, bare_s = min(r["s"] for r in runs), min(r["s"] for r in bare_runs)
            ours_total += ours_s
            bare_total += bare_s
            n_tasks += sum(tasks.values())
            stem = path.stem
            results[f"dag_parse_{stem}_s"] = round(ours_s, 3)
            results[f"dag_parse_{stem}_bare_s"] = round(bare_s, 3)
            results[f"dag_parse_{stem}_tasks"] = sum(tasks.values())
            results[f"dag_parse_{stem}_vs_bare"] = round(ours_s / bare_s, 3)
            print(
                f"{path.name}: {len(tasks)} DAG(s), {sum(tasks.values())} tasks, ours {ours_s:.3f} s, bare {bare_s:.3f} s",
                flush=True,
            )
        results.update(
            {
                "dag_parse_files": len(files),
                "dag_parse_tasks": n_tasks,
                "dag_parse_ours_s": round(ours_total, 3),
                "dag_parse_bare_s": round(bare_total, 3),
                "dag_parse_time_vs_bare": round(ours_total / bare_total, 3),
            }
        )
    emit(results)


if __name__ == "__main__":
    main()
