"""Drift detection: our core path (seeded sampling, projected reads, pinned tests) vs plain Evidently.

Two measurements, ratios against baselines measured in the same run:

1. Speed and memory at ``DRIFT_BENCH_BIG_ROWS`` (default 1M) x 20 columns, drift injected into 5 known
   columns. Baseline: read both parquet files fully with pandas, ``Report([DataDriftPreset()])`` on the full
   frames, save HTML + JSON. Ours: ``core.drift.detect_drift`` on the same URIs (reads, samples, fingerprints
   both datasets, writes HTML + JSON + result). Each runs in a fresh child process after importing Evidently,
   so the times exclude the ~4 s import and the peak RSS is each path's own.

2. Agreement over ``DRIFT_BENCH_TRIALS`` (default 100) seeded trials at ``DRIFT_BENCH_TRIAL_ROWS`` (default
   100k) x 20: each trial draws new data with drift injected into 2-8 random columns (mean shifts of 0.15-1.0
   std, scale changes, category mixes). The full-data decision per column comes from Evidently's own test
   selection and test functions on the full columns (what ``Report`` computes per column); ours samples with
   ``core.drift.sample_indices`` (seeded) and applies the test ``core.drift.default_method`` pins, as
   ``detect_drift`` does. Running 100 full ``Report``s would take ~20 minutes here, so two spot-check trials
   also run the full ``Report`` and ``detect_drift`` end to end and check that they agree with the above.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import emit, peak_rss_mb

N_NUM, N_CAT = 16, 4
COLUMNS = [f"num_{i}" for i in range(N_NUM)] + [f"cat_{i}" for i in range(N_CAT)]
BIG_DRIFTED = ["num_0", "num_3", "num_7", "num_12", "cat_1"]


def make_pair(rows: int, seed: int, drifted: list[str] | None = None) -> tuple[Any, Any, list[str]]:
    """Reference and current frames; drift injected into ``drifted`` (or 2-8 random columns)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    if drifted is None:
        k = int(rng.integers(2, 9))
        drifted = sorted(rng.choice(COLUMNS, size=k, replace=False).tolist())
    ref, cur = {}, {}
    for i in range(N_NUM):
        name = f"num_{i}"
        mean, std = rng.normal(0, 5), rng.uniform(0.5, 3)
        ref[name] = rng.normal(mean, std, rows)
        if name in drifted:
            if rng.random() < 0.7:
                cur[name] = rng.normal(mean + std * rng.uniform(0.15, 1.0) * rng.choice([-1, 1]), std, rows)
            else:
                cur[name] = rng.normal(mean, std * rng.uniform(1.5, 2.5), rows)
        else:
            cur[name] = rng.normal(mean, std, rows)
    for i in range(N_CAT):
        name = f"cat_{i}"
        cats = np.array([f"c{j}" for j in range(int(rng.integers(4, 9)))])
        probs = rng.dirichlet(np.ones(len(cats)) * 2)
        ref[name] = rng.choice(cats, rows, p=probs)
        cur_probs = probs
        if name in drifted:
            mix = rng.uniform(0.6, 1.0)
            cur_probs = (1 - mix) * probs + mix * rng.dirichlet(np.ones(len(cats)) * 0.5)
        cur[name] = rng.choice(cats, rows, p=cur_probs)
    return pd.DataFrame(ref), pd.DataFrame(cur), drifted


# -------------------------------------------------------------------------------- per-column decisions
def full_data_decisions(ref: Any, cur: Any) -> dict[str, tuple[str, float, bool]]:
    """Evidently's default test (chosen on the full data) run on the full columns: {col: (method, score, drifted)}."""
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    out = {}
    for name in COLUMNS:
        kind = ColumnType.Numerical if name.startswith("num_") else ColumnType.Categorical
        test = get_stattest(ref[name], cur[name], kind, None)
        result = test(ref[name], cur[name], kind, None)
        out[name] = (test.name, float(result.drift_score), bool(result.drifted))
    return out


def sampled_decisions(ref: Any, cur: Any, sample_size: int, seed: int) -> dict[str, tuple[str, float, bool]]:
    """What detect_drift computes per column: seeded sample of each side, test pinned on full row counts."""
    import pandas as pd
    from evidently.legacy.calculations.stattests.registry import get_registered_stattest
    from evidently.legacy.core import ColumnType

    from airflow_mlops.core.drift import CATEGORICAL, NUMERICAL, default_method, sample_indices

    ref_s = ref.iloc[sample_indices(len(ref), sample_size, seed, 0)]
    cur_s = cur.iloc[sample_indices(len(cur), sample_size, seed, 1)]
    out = {}
    for name in COLUMNS:
        kind = NUMERICAL if name.startswith("num_") else CATEGORICAL
        n_unique = int(pd.concat([ref_s[name], cur_s[name]], ignore_index=True).nunique())
        method = default_method(kind, len(ref), n_unique)
        column_type = ColumnType.Numerical if kind == NUMERICAL else ColumnType.Categorical
        result = get_registered_stattest(method, column_type)(ref_s[name], cur_s[name], column_type, None)
        out[name] = (method, float(result.drift_score), bool(result.drifted))
    return out


def drifted_set(decisions: dict[str, tuple[str, float, bool]]) -> list[str]:
    return sorted(c for c, (_, _, d) in decisions.items() if d)


# -------------------------------------------------------------------------------- child processes
def own_peak_rss_mb() -> float:
    """This process's own peak RSS: VmHWM, because ru_maxrss keeps the parent's high-water mark across exec."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()


def child(mode: str, ref_uri: str, cur_uri: str, out_dir: str) -> None:
    import evidently
    import evidently.presets  # noqa: F401

    start = time.perf_counter()
    if mode == "baseline":
        import pandas as pd
        from evidently import Report
        from evidently.presets import DataDriftPreset

        ref, cur = pd.read_parquet(ref_uri), pd.read_parquet(cur_uri)
        snapshot = Report([DataDriftPreset()], include_tests=True).run(cur, ref)
        snapshot.save_html(os.path.join(out_dir, "baseline.html"))
        snapshot.save_json(os.path.join(out_dir, "baseline.json"))
        payload = json.loads(snapshot.json())
        ids = {m["id"]: m["config"]["column"] for m in payload["metrics"] if "column" in m["config"]}
        drifted = sorted(
            ids[t["metric_config"]["metric_id"]]
            for t in payload["tests"]
            if t["metric_config"]["metric_id"] in ids and str(t["status"]).endswith("FAIL")
        )
    else:
        from airflow_mlops.core.drift import detect_drift

        result = detect_drift(ref_uri, cur_uri, report_uri=os.path.join(out_dir, "ours"))
        drifted = sorted(result.drifted_columns)
    elapsed = time.perf_counter() - start
    print(json.dumps({"elapsed_s": elapsed, "peak_rss_mb": own_peak_rss_mb(), "drifted": drifted}))


def run_child(mode: str, ref_uri: str, cur_uri: str, out_dir: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, ref_uri, cur_uri, out_dir],
        capture_output=True,
        text=True,
        env={**os.environ, "DO_NOT_TRACK": "1"},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} child failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


# -------------------------------------------------------------------------------- main
def main() -> None:
    big_rows = int(os.environ.get("DRIFT_BENCH_BIG_ROWS", "1000000"))
    trials = int(os.environ.get("DRIFT_BENCH_TRIALS", "100"))
    trial_rows = int(os.environ.get("DRIFT_BENCH_TRIAL_ROWS", "100000"))
    sample_size = int(os.environ.get("DRIFT_BENCH_SAMPLE_SIZE", "50000"))
    results: dict[str, Any] = {}

    with tempfile.TemporaryDirectory(prefix="drift-bench-") as tmp:
        # 1. speed and memory at big_rows x 20
        ref, cur, _ = make_pair(big_rows, seed=2026, drifted=BIG_DRIFTED)
        ref_uri, cur_uri = os.path.join(tmp, "ref.parquet"), os.path.join(tmp, "cur.parquet")
        ref.to_parquet(ref_uri, row_group_size=131_072)
        cur.to_parquet(cur_uri, row_group_size=131_072)
        del ref, cur
        ours = run_child("ours", ref_uri, cur_uri, tmp)
        print(
            f"ours at {big_rows}x20: {ours['elapsed_s']:.1f} s, peak RSS {ours['peak_rss_mb']:.0f} MB",
            flush=True,
        )
        base = run_child("baseline", ref_uri, cur_uri, tmp)
        print(
            f"plain Evidently at {big_rows}x20: {base['elapsed_s']:.1f} s, peak RSS {base['peak_rss_mb']:.0f} MB",
            flush=True,
        )
        tag = f"{big_rows // 1000}k" if big_rows < 1_000_000 else f"{big_rows // 1_000_000}M"
        results.update(
            {
                f"drift_{tag}x20_plain_evidently_s": round(base["elapsed_s"], 2),
                f"drift_{tag}x20_ours_s": round(ours["elapsed_s"], 2),
                f"drift_{tag}x20_speedup": round(base["elapsed_s"] / ours["elapsed_s"], 1),
                f"drift_{tag}x20_plain_evidently_peak_rss_mb": round(base["peak_rss_mb"]),
                f"drift_{tag}x20_ours_peak_rss_mb": round(ours["peak_rss_mb"]),
                f"drift_{tag}x20_same_drifted_columns": base["drifted"] == ours["drifted"],
                f"drift_{tag}x20_injected_found": ours["drifted"] == sorted(BIG_DRIFTED),
            }
        )

        if trials <= 0:
            emit(results)
            return
        # 2. agreement over seeded trials
        agree, recall_hits, recall_total, min_margin = 0, 0, 0, float("inf")
        disagreements = []
        started = time.perf_counter()
        for trial in range(trials):
            t_ref, t_cur, injected = make_pair(trial_rows, seed=trial)
            full = full_data_decisions(t_ref, t_cur)
            ours_dec = sampled_decisions(t_ref, t_cur, sample_size, seed=trial)
            full_set, ours_set = drifted_set(full), drifted_set(ours_dec)
            if full_set == ours_set:
                agree += 1
            else:
                disagreements.append({"trial": trial, "full": full_set, "sampled": ours_set})
            recall_hits += len(set(injected) & set(full_set))
            recall_total += len(injected)
            for method, score, _ in full.values():
                if method in ("wasserstein", "jensenshannon"):
                    min_margin = min(min_margin, abs(score - 0.1))
            if trial < 2:  # spot check: full Report and detect_drift end to end agree with the above
                spot_ref, spot_cur = os.path.join(tmp, "sref.parquet"), os.path.join(tmp, "scur.parquet")
                t_ref.to_parquet(spot_ref)
                t_cur.to_parquet(spot_cur)
                report_full = run_child("baseline", spot_ref, spot_cur, tmp)["drifted"]
                report_ours = run_child("ours", spot_ref, spot_cur, tmp)["drifted"]
                assert report_full == full_set, (trial, report_full, full_set)
                assert report_ours == ours_set, (trial, report_ours, ours_set)
                print(f"spot check trial {trial}: Report == stattests (full and sampled)", flush=True)
        results.update(
            {
                f"drift_agreement_{trials}_trials_{trial_rows // 1000}kx20": f"{agree}/{trials}",
                "drift_agreement_ratio": round(agree / trials, 4),
                "drift_agreement_sample_size": sample_size,
                "drift_injected_columns_found_full_data": f"{recall_hits}/{recall_total}",
                "drift_min_score_margin_to_threshold": round(min_margin, 4),
                "drift_trials_elapsed_s": round(time.perf_counter() - started, 1),
            }
        )
        if disagreements:
            print("disagreements:", json.dumps(disagreements[:10]))
    emit(results)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:6])
    else:
        main()
