"""DAG parse time: the example DAG files in dags/ vs bare DAG files with the same number of tasks.

Each example file is parsed in a fresh interpreter (``DagBag`` on that one file, what the dag-processor does),
and so is a generated bare file with the same DAGs and task counts made of ``EmptyOperator``s. The time is the
``DagBag`` load of the file alone (the interpreter's own start and ``import airflow`` are excluded, since every
parse in a dag-processor already has them); best of N per file. Two figures per file:

* **cold**: nothing but Airflow imported, so the file pays every import it makes;
* **warm**: the modules the file names in its import statements are imported first, as the dag-processor's
  ``[dag_processor] parsing_pre_import_modules`` does before it forks the parsing process. (Airflow 3.3
  pre-imports only names under ``airflow.``, so a stock dag-processor gives ``airflow_mlops`` files the cold
  figure; the warm one is what is left once the imports are paid, e.g. in a long-lived process.)

The ratios are ours / bare for each. Run: ``python bench/dag_parse.py`` (``MLOPS_BENCH_PARSE_REPEAT`` sets N,
default 5).
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
import ast, importlib, json, sys, time, warnings
warnings.simplefilter("ignore")
import airflow  # noqa: F401  (paid by every dag-processor once, not per file)
from airflow.dag_processing.dagbag import DagBag
if sys.argv[2] == "warm":
    for node in ast.walk(ast.parse(open(sys.argv[1]).read())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        else:
            continue
        for name in names:
            importlib.import_module(name)
start = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1], safe_mode=False)
elapsed = time.perf_counter() - start
print(json.dumps({"s": elapsed, "errors": {k: str(v)[:300] for k, v in bag.import_errors.items()},
                  "tasks": {d.dag_id: len(d.tasks) for d in bag.dags.values()},
                  "params": {d.dag_id: {k: [p.value, p.description, p.schema]
                                        for k in d.params for p in [d.params.get_param(k)]}
                             for d in bag.dags.values()}}))
"""


def parse(path: Path, env: dict[str, str], mode: str = "cold") -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _PARSE, str(path), mode], capture_output=True, text=True, env=env, cwd=ROOT
    )
    if proc.returncode != 0:
        raise RuntimeError(f"parsing {path} failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def bare_file(tasks: dict[str, int], params: dict[str, dict[str, list]], path: Path) -> None:
    """The same DAGs written by hand: as many ``EmptyOperator`` tasks, and the same run Params (Airflow copies a
    DAG's Params into every task, so they are part of what any DAG with that form costs to parse)."""
    lines = [
        "from datetime import datetime",
        "from airflow.providers.standard.operators.empty import EmptyOperator",
        "from airflow.sdk import DAG, Param",
    ]
    for i, (dag_id, count) in enumerate(sorted(tasks.items())):
        spec = ", ".join(
            f"{k!r}: Param({value!r}, description={description!r}, **{schema!r})"
            for k, (value, description, schema) in params.get(dag_id, {}).items()
        )
        lines += [
            f"with DAG({('bare_' + dag_id)!r}, schedule=None, start_date=datetime(2026, 1, 1),"
            f" params={{{spec}}}) as dag_{i}:",
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
        totals = {"cold": 0.0, "cold_bare": 0.0, "warm": 0.0, "warm_bare": 0.0}
        results: dict[str, object] = {}
        n_tasks = 0
        for path in files:
            runs = [parse(path, env) for _ in range(REPEAT)]
            if runs[0]["errors"]:
                raise RuntimeError(f"{path.name} has import errors: {runs[0]['errors']}")
            tasks = runs[0]["tasks"]
            bare = Path(tmp) / f"bare_{path.name}"
            bare_file(tasks, runs[0]["params"], bare)
            best = {
                "cold": min(r["s"] for r in runs),
                "cold_bare": min(parse(bare, env)["s"] for _ in range(REPEAT)),
                "warm": min(parse(path, env, "warm")["s"] for _ in range(REPEAT)),
                "warm_bare": min(parse(bare, env, "warm")["s"] for _ in range(REPEAT)),
            }
            for k, v in best.items():
                totals[k] += v
            n_tasks += sum(tasks.values())
            stem = path.stem
            results[f"dag_parse_{stem}_s"] = round(best["cold"], 4)
            results[f"dag_parse_{stem}_bare_s"] = round(best["cold_bare"], 4)
            results[f"dag_parse_{stem}_tasks"] = sum(tasks.values())
            results[f"dag_parse_{stem}_vs_bare"] = round(best["cold"] / best["cold_bare"], 3)
            results[f"dag_parse_warm_{stem}_s"] = round(best["warm"], 4)
            results[f"dag_parse_warm_{stem}_bare_s"] = round(best["warm_bare"], 4)
            results[f"dag_parse_warm_{stem}_vs_bare"] = round(best["warm"] / best["warm_bare"], 3)
            print(
                f"{path.name}: {len(tasks)} DAG(s), {sum(tasks.values())} tasks; cold ours {best['cold']:.4f} s, "
                f"bare {best['cold_bare']:.4f} s; warm ours {best['warm']:.4f} s, bare {best['warm_bare']:.4f} s",
                flush=True,
            )
        results.update(
            {
                "dag_parse_files": len(files),
                "dag_parse_tasks": n_tasks,
                "dag_parse_ours_s": round(totals["cold"], 4),
                "dag_parse_bare_s": round(totals["cold_bare"], 4),
                "dag_parse_time_vs_bare": round(totals["cold"] / totals["cold_bare"], 3),
                "dag_parse_warm_ours_s": round(totals["warm"], 4),
                "dag_parse_warm_bare_s": round(totals["warm_bare"], 4),
                "dag_parse_warm_time_vs_bare": round(totals["warm"] / totals["warm_bare"], 3),
            }
        )
    emit(results)


if __name__ == "__main__":
    main()
