"""Run every benchmark script in bench/ and print one table of ratios (``./dev bench``).

Each script prints its figures and writes them as JSON to the path in ``MLOPS_BENCH_OUT``; this collects
them into bench/results.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    scripts = sorted(
        p
        for p in HERE.glob("*.py")
        if p.name not in {"run_all.py", "common.py"} and not p.name.startswith("_")
    )
    if not scripts:
        print("no benchmark scripts in bench/", file=sys.stderr)
        return 1
    results: dict[str, object] = {}
    failed = []
    for script in scripts:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
            out_path = out.name
        print(f"== {script.name}", flush=True)
        proc = subprocess.run([sys.executable, str(script)], env={**os.environ, "MLOPS_BENCH_OUT": out_path})
        if proc.returncode != 0:
            failed.append(script.name)
            continue
        try:
            results.update(json.loads(Path(out_path).read_text() or "{}"))
        finally:
            os.unlink(out_path)
    (HERE / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    width = max((len(k) for k in results), default=10)
    print("\n" + "metric".ljust(width) + "  value")
    for key in sorted(results):
        print(f"{key.ljust(width)}  {results[key]}")
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
