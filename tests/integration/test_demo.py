"""``./dev demo`` end to end: the story and its summary fit on one screen, with no third-party warning floods."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_the_lifecycle_and_fits_on_one_screen(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW_TRACKING"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        [sys.executable, "-m", "airflow_mlops.demo", "--root", str(tmp_path / "demo")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    lines = output.splitlines()
    assert len(lines) < 80, f"the demo printed {len(lines)} lines:\n" + "\n".join(lines[:120])
    assert not re.search(r"\w+Warning", output), output
    assert "4/4" in output and "champion" in output and "DRIFT, drift Asset event emitted" in output
