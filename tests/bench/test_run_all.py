"""``./dev bench`` writes every headline key its scripts can give, and fails when one goes missing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench import run_all
from tests.helpers.compose import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_missing_headline_is_an_error_of_the_bench_command():
    headlines = {name: 1.0 for name in run_all.HEADLINES}
    assert run_all.missing_headlines(headlines, {"inference", "drift"}, quick=False) == []
    headlines["scoring_throughput_vs_handwritten_loop"] = None
    headlines["scoring_peak_rss_mb_16m"] = None
    assert run_all.missing_headlines(headlines, {"inference"}, quick=False) == [
        "scoring_throughput_vs_handwritten_loop",
        "scoring_peak_rss_mb_16m",
    ]
    # --quick sizes cannot give the figures named after full sizes; a script that did not run gives none
    assert run_all.missing_headlines(headlines, {"inference"}, quick=True) == [
        "scoring_throughput_vs_handwritten_loop"
    ]
    assert run_all.missing_headlines(headlines, {"drift"}, quick=False) == []


def test_quick_inference_bench_writes_its_headline_keys(tmp_path):
    """The scoring headlines were once silently absent (derived from keys the script never wrote)."""
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "bench/run_all.py", "--quick", "--only", "inference", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    for key in ("scoring_throughput_vs_handwritten_loop", "scoring_throughput_vs_in_memory_predict_gbdt"):
        assert isinstance(results[key], float) and results[key] > 0, (key, results)
    assert results["raw"]["inference.logreg.predictions_identical"] is True
    assert results["raw"]["inference.hgb.predictions_identical"] is True
