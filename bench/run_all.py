"""Run every benchmark script in bench/ and print one table of ratios (``./dev bench [--quick] [--only x,y]``).

Each script prints its figures and writes them as JSON to the path in ``MLOPS_BENCH_OUT``. This collects them,
derives the headline keys the project reports (see ``HEADLINES``) from the scripts' own figures, and writes
everything to bench/results.json: the headline keys at the top level, every raw figure under its script's
prefix. ``--quick`` runs every script on small sizes (a smoke check of the scripts, not figures to quote: the
size-named headlines such as ``scoring_peak_rss_mb_16m`` are then absent) and writes bench/results.quick.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

HERE = Path(__file__).resolve().parent

# Environment of each script in --quick mode: small sizes, few repeats.
QUICK_ENV = {
    "MLOPS_BENCH_ROWS": "100000",  # validation rows, scoring throughput rows
    "MLOPS_BENCH_REPEAT": "1",
    "MLOPS_BENCH_RSS_ROWS": "0.1,0.2",
    "MLOPS_BENCH_RSS_ROWS_HGB": "0.1",
    "DRIFT_BENCH_BIG_ROWS": "20000",
    "DRIFT_BENCH_TRIALS": "2",
    "DRIFT_BENCH_TRIAL_ROWS": "5000",
    "DRIFT_BENCH_SAMPLE_SIZE": "2000",
    "MLOPS_BENCH_PARSE_REPEAT": "1",
    "MODELS_BENCH_MODELS": "5",
    "MODELS_BENCH_VERSIONS": "20",
    "MODELS_BENCH_CHECKS": "10",
    "MLOPS_BENCH_SPARK_ROWS": "0.2",
    "MLOPS_BENCH_SPARK_RSS_ROWS": "0.1,0.2",
}
QUICK_ARGS = {"training.py": ["--rows", "2000", "--epochs", "1"]}


def _min(*keys: str) -> Callable[[dict[str, Any]], Any]:
    def fn(raw: dict[str, Any]) -> Any:
        values = [raw[k] for k in keys if isinstance(raw.get(k), int | float)]
        return min(values) if len(values) == len(keys) else None

    return fn


def _growth(small: str, big: str) -> Callable[[dict[str, Any]], Any]:
    def fn(raw: dict[str, Any]) -> Any:
        a, b = raw.get(small), raw.get(big)
        return (
            round(b / a - 1, 3) if isinstance(a, int | float) and isinstance(b, int | float) and a else None
        )

    return fn


def _ratio(num: str, den: str) -> Callable[[dict[str, Any]], Any]:
    def fn(raw: dict[str, Any]) -> Any:
        a, b = raw.get(num), raw.get(den)
        return round(a / b, 3) if isinstance(a, int | float) and isinstance(b, int | float) and b else None

    return fn


def _key(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda raw: raw.get(key)


def _if_present(marker: str, key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda raw: raw.get(key) if marker in raw else None


@dataclass(frozen=True)
class Headline:
    """One headline figure: the script that measures it, how it is derived from the raw figures, what it means.

    ``full_only`` marks a figure named after a full-size run (``..._16m``): ``--quick`` sizes cannot give it.
    Every other headline of a script that ran must be present, or the bench command fails.
    """

    script: str
    derive: Callable[[dict[str, Any]], Any]
    meaning: str
    full_only: bool = False


# Throughput ratios are process CPU time ratios (all threads): on a shared, oversubscribed machine they count the
# work, not the waiting; the wall-time ratios are kept under raw.
HEADLINES: dict[str, Headline] = {
    "validation_time_vs_bare_gx": Headline(
        "validation",
        _key("validation.validation_ratio_vs_bare_gx_basic"),
        "our validate_dataset time / bare GX on the in-memory frame, same result format (lower is better)",
    ),
    "validation_time_vs_bare_gx_default_format": Headline(
        "validation",
        _key("validation.validation_ratio_vs_bare_gx_default"),
        "same, bare GX with its default SUMMARY result format",
    ),
    "scoring_throughput_vs_handwritten_loop": Headline(
        "inference",
        _min("inference.logreg.core_vs_hand_loop.cpu", "inference.hgb.core_vs_hand_loop.cpu"),
        "our rows/s / a hand-written pyarrow loop, CPU time, the lower of the two models (higher is better)",
    ),
    "scoring_throughput_vs_in_memory_predict_gbdt": Headline(
        "inference",
        _key("inference.hgb.core_vs_in_memory.cpu"),
        "our rows/s / the GBDT's own predict on rows already in memory, CPU time (higher is better)",
    ),
    "scoring_peak_rss_mb_16m": Headline(
        "inference", _key("inference.logreg.peak_rss_mb.16M"), "peak RSS of a 16M-row job, MB", full_only=True
    ),
    "scoring_rss_growth_4m_to_16m": Headline(
        "inference",
        _growth("inference.logreg.peak_rss_mb.4M", "inference.logreg.peak_rss_mb.16M"),
        "peak RSS at 16M rows / at 4M rows - 1 (0 = flat)",
        full_only=True,
    ),
    "drift_speedup_vs_evidently_1m": Headline(
        "drift",
        _key("drift.drift_1Mx20_speedup"),
        "plain Evidently time / ours at 1M x 20 (higher is better)",
        full_only=True,
    ),
    "drift_decision_agreement_100k": Headline(
        "drift",
        _if_present("drift.drift_agreement_100_trials_100kx20", "drift.drift_agreement_ratio"),
        "share of 100 seeded trials at 100k x 20 where our drifted-column set equals full-data Evidently's",
        full_only=True,
    ),
    "drift_peak_rss_vs_evidently_1m": Headline(
        "drift",
        _ratio("drift.drift_1Mx20_ours_peak_rss_mb", "drift.drift_1Mx20_plain_evidently_peak_rss_mb"),
        "our peak RSS / plain Evidently's at 1M x 20 (lower is better)",
        full_only=True,
    ),
    "dag_parse_time_vs_bare": Headline(
        "dag_parse",
        _key("dag_parse.dag_parse_time_vs_bare"),
        "DagBag parse time of dags/*.py / bare EmptyOperator DAGs with the same task counts (lower is better)",
    ),
    "dag_parse_time_vs_bare_local_lifecycle": Headline(
        "dag_parse",
        _key("dag_parse.dag_parse_churn_lifecycle_vs_bare"),
        "same, the local-training lifecycle file alone",
    ),
    "dag_parse_cold_import_local_lifecycle_s": Headline(
        "dag_parse",
        _key("dag_parse.dag_parse_churn_lifecycle_s"),
        "seconds to parse the local lifecycle file in a fresh interpreter with only Airflow imported",
    ),
    "dag_parse_warm_vs_bare_local_lifecycle": Headline(
        "dag_parse",
        _key("dag_parse.dag_parse_warm_churn_lifecycle_vs_bare"),
        "the same parse with the file's imports pre-imported / a bare file likewise (lower is better)",
    ),
    "dag_parse_cold_import_gpu_lifecycle_s": Headline(
        "dag_parse",
        _key("dag_parse.dag_parse_churn_gpu_lifecycle_s"),
        "seconds to parse the Kubernetes lifecycle file cold (it imports the Kubernetes provider)",
    ),
    "models_list_page_s_50x200": Headline(
        "models_view",
        _key("models_view.models_list_page_s_50x200"),
        "seconds for the Models list (read model + HTML) of 50 models x 200 versions over a real MLflow server",
        full_only=True,
    ),
    "model_page_s_200_versions": Headline(
        "models_view",
        _key("models_view.model_page_s_200_versions"),
        "seconds for one model page (200 versions, 100 drift checks) over a real MLflow server",
        full_only=True,
    ),
    "models_list_vs_bare_search": Headline(
        "models_view",
        _key("models_view.models_list_vs_bare_search"),
        "Models list time / the bare search_registered_models pages alone (lower is better)",
    ),
    "model_page_vs_bare_versions": Headline(
        "models_view",
        _key("models_view.model_page_vs_bare_versions"),
        "model page time / the bare search_model_versions of its versions alone (lower is better)",
    ),
    "spark_vs_single_throughput_8m": Headline(
        "spark_inference",
        _key("spark_inference.spark_vs_single_throughput"),
        "rows/s of a whole Spark local[2] scoring job / the single-process streamed job, same 8M rows",
        full_only=True,
    ),
    "spark_driver_rss_growth_2m_to_8m": Headline(
        "spark_inference",
        _key("spark_inference.driver_rss_growth"),
        "Spark driver-side peak RSS (JVM + Python driver) at 8M rows / at 2M - 1 (goal: flat, within 0.15)",
        full_only=True,
    ),
    "training_amp_vs_fp32_throughput": Headline(
        "training",
        _key("training.amp_vs_fp32_throughput_ratio"),
        "training samples/s with AMP (CPU: bf16 autocast) / fp32 (higher is better)",
    ),
}


def missing_headlines(headlines: dict[str, Any], ran: set[str], quick: bool) -> list[str]:
    """Headlines a script that ran should have given but did not (an error of the bench command)."""
    return [
        name
        for name, h in HEADLINES.items()
        if h.script in ran and headlines.get(name) is None and not (quick and h.full_only)
    ]


def run_script(script: Path, quick: bool) -> tuple[dict[str, Any], float, str | None]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        out_path = out.name
    env = {**os.environ, "MLOPS_BENCH_OUT": out_path, "MLFLOW_DISABLE_TELEMETRY": "true"}
    if quick:
        env.update(QUICK_ENV)
    args = QUICK_ARGS.get(script.name, []) if quick else []
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(script), *args], env=env, cwd=HERE.parent)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            return {}, elapsed, f"exit code {proc.returncode}"
        text = Path(out_path).read_text()
        return (json.loads(text) if text.strip() else {}), elapsed, None
    finally:
        os.unlink(out_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke check of every script")
    parser.add_argument("--only", default="", help="comma-separated script names (e.g. drift,dag_parse)")
    parser.add_argument("--out", default=None, help="results file (default bench/results.json)")
    args = parser.parse_args(argv)
    only = {s.strip().removesuffix(".py") for s in args.only.split(",") if s.strip()}
    scripts = sorted(
        p
        for p in HERE.glob("*.py")
        if p.name not in {"run_all.py", "common.py", "__init__.py"}
        and not p.name.startswith("_")
        and (not only or p.stem in only)
    )
    if not scripts:
        print("no benchmark scripts selected in bench/", file=sys.stderr)
        return 1
    raw: dict[str, Any] = {}
    failed: dict[str, str] = {}
    timings: dict[str, float] = {}
    for script in scripts:
        print(f"== {script.name}{' (quick)' if args.quick else ''}", flush=True)
        figures, elapsed, error = run_script(script, args.quick)
        timings[script.stem] = round(elapsed, 1)
        if error:
            failed[script.name] = error
        for key, value in figures.items():
            prefix = script.stem
            raw[key if key.startswith(f"{prefix}.") else f"{prefix}.{key}"] = value

    headlines = {name: h.derive(raw) for name, h in HEADLINES.items()}
    ran = {s.stem for s in scripts if s.name not in failed}
    missing = missing_headlines(headlines, ran, args.quick)
    results = {
        **{k: v for k, v in headlines.items() if v is not None},
        "raw": dict(sorted(raw.items())),
        "script_seconds": timings,
        "quick": args.quick,
    }
    out = Path(args.out) if args.out else HERE / ("results.quick.json" if args.quick else "results.json")
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")

    width = max(len(k) for k in HEADLINES)
    print("\n" + "headline".ljust(width) + "  value     meaning")
    for name, h in HEADLINES.items():
        value, meaning = headlines[name], h.meaning
        shown = "-" if value is None else str(value)
        print(f"{name.ljust(width)}  {shown.ljust(8)}  {meaning}")
    print(f"\nscript seconds: {timings}; all figures in {out}")
    if missing:
        print(
            f"headline key(s) missing although their script ran: {missing}; a script stopped emitting the raw "
            "figure a headline is derived from (see HEADLINES in bench/run_all.py)",
            file=sys.stderr,
        )
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed or missing else 0


if __name__ == "__main__":
    sys.exit(main())
