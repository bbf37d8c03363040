"""Benchmark of the Spark scoring backend (issue 19): Spark local[2] vs the single-process path, same rows.

A logistic regression on 20 float64 columns, logged to a local MLflow store (SQLite + local artifacts) and
registered as ``bench-spark@champion``. The input is a folder of parquet parts (1M rows each).

* throughput: rows/s of one whole job on the same ``MLOPS_BENCH_SPARK_ROWS`` rows (default 8M) for
  ``core.scoring.run_batch_inference`` (one process, streamed) and for the Spark backend
  (``core.scoring.spark.prepared_spark_job`` + ``spark-submit --master local[2]`` of the shipped
  ``spark_job.py`` + the commit), both from resolve to manifest, each in a fresh process;
* peak RSS of each job's whole process tree (the single process; the Spark JVM, its Python driver and its Python
  workers), polled every 100 ms;
* the driver side's peak RSS (the JVM of spark-submit plus the Python driver, without the executors' Python
  workers) at each of ``MLOPS_BENCH_SPARK_RSS_ROWS`` (default "2,4,8" millions): it should stay flat as rows
  grow, since nothing is collected to the driver.

Run: ``python bench/spark_inference.py`` (a JDK 17+ and the ``spark`` extra).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from bench.common import emit, peak_rss_mb

FEATURES = [f"f{i:02d}" for i in range(20)]
PART_ROWS = 1 << 20
MODEL = "bench-spark"
SPARK_CONF = {
    "spark.ui.enabled": "false",
    "spark.driver.memory": "1g",
    "spark.sql.shuffle.partitions": "2",
    "spark.ui.showConsoleProgress": "false",
}


def generate(folder: str, rows: int, seed: int = 0) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    done, part = 0, 0
    while done < rows:
        n = min(PART_ROWS, rows - done)
        block = rng.standard_normal((n, len(FEATURES)))
        table = pa.table(
            {
                "id": np.arange(done, done + n, dtype=np.int64),
                **{f: block[:, j] for j, f in enumerate(FEATURES)},
            }
        )
        pq.write_table(table, f"{folder}/part-{part:04d}.parquet")
        done, part = done + n, part + 1


def train(tracking_uri: str) -> None:
    import mlflow
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    mlflow.set_tracking_uri(tracking_uri)
    rng = np.random.default_rng(1)
    x = pd.DataFrame(rng.standard_normal((5_000, len(FEATURES))), columns=FEATURES)
    y = (x.f00 + x.f01 * x.f02 > 0).astype(int)
    clf = LogisticRegression(max_iter=500).fit(x, y)
    mlflow.set_experiment("bench-spark")
    with mlflow.start_run():
        mlflow.sklearn.log_model(
            clf, name="model", signature=infer_signature(x, clf.predict(x)), registered_model_name=MODEL
        )
    MlflowClient().set_registered_model_alias(MODEL, "champion", "1")


class TreeRss:
    """Poll the RSS of a process tree every 100 ms: the peak of the whole tree and of the driver side."""

    def __init__(self, root: int) -> None:
        self.root, self.peak_all, self.peak_driver = root, 0.0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _tree(root: int) -> list[int]:
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(stat.parent.name))
        out, todo = [root], [root]
        while todo:
            for child in children.get(todo.pop(), []):
                out.append(child)
                todo.append(child)
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            total = driver = 0.0
            for pid in self._tree(self.root):
                try:
                    rss = (
                        int(Path(f"/proc/{pid}/statm").read_text().split()[1])
                        * os.sysconf("SC_PAGE_SIZE")
                        / 2**20
                    )
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                except (OSError, IndexError, ValueError):
                    continue
                total += rss
                if b"pyspark.daemon" not in cmd and b"pyspark.worker" not in cmd:
                    driver += rss
            self.peak_all, self.peak_driver = max(self.peak_all, total), max(self.peak_driver, driver)
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def single_job(tracking_uri: str, src: str, dst: str) -> dict[str, float]:
    import mlflow
    from mlflow import MlflowClient

    from airflow_mlops.core.scoring import run_batch_inference

    mlflow.set_tracking_uri(tracking_uri)
    t0 = time.perf_counter()
    res = run_batch_inference(MlflowClient(), f"models:/{MODEL}@champion", src, dst, progress_interval=1e9)
    return {"rows": res.rows, "seconds": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb()}


def spark_job(tracking_uri: str, src: str, dst: str) -> dict[str, float]:
    """The Spark backend's whole job without Airflow: prepare (pin, check, skip rule), spark-submit, commit."""
    import mlflow
    from mlflow import MlflowClient

    from airflow_mlops.core.scoring.spark import prepared_spark_job
    from airflow_mlops.operators.spark import default_application

    mlflow.set_tracking_uri(tracking_uri)
    t0 = time.perf_counter()
    with prepared_spark_job(
        MlflowClient(), f"models:/{MODEL}@champion", src, dst, passthrough_columns=["id"]
    ) as job:
        command = [os.path.join(os.path.dirname(sys.executable), "spark-submit"), "--master", "local[2]"]
        for key, value in SPARK_CONF.items():
            command += ["--conf", f"{key}={value}"]
        command += [default_application(), *job.job_arguments()]
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": tracking_uri,
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
        }
        proc = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        rss = TreeRss(proc.pid)
        _, err = proc.communicate()
        rss.stop()
        if proc.returncode:
            raise RuntimeError(f"spark-submit exited {proc.returncode}:\n{err[-3000:]}")
        result = job.commit()
    return {
        "rows": result.rows,
        "seconds": time.perf_counter() - t0,
        "tree_peak_rss_mb": rss.peak_all,
        "driver_peak_rss_mb": rss.peak_driver,
    }


def _child(*args: str) -> dict:
    """Run one job in a fresh interpreter, polling the RSS of its whole tree; return its figures."""
    proc = subprocess.Popen([sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE, text=True)
    rss = TreeRss(proc.pid)
    out, _ = proc.communicate()
    rss.stop()
    if proc.returncode:
        raise RuntimeError(f"child {args} exited {proc.returncode}")
    figures = json.loads(out.strip().splitlines()[-1])
    figures["tree_peak_rss_mb"] = max(figures.get("tree_peak_rss_mb", 0.0), rss.peak_all)
    return figures


def _label(rows: int) -> str:
    return f"{rows / 1e6:g}m"


def main() -> None:
    rows = int(float(os.environ.get("MLOPS_BENCH_SPARK_ROWS", "8")) * 1_000_000)
    rss_sizes = [
        int(float(s) * 1_000_000) for s in os.environ.get("MLOPS_BENCH_SPARK_RSS_ROWS", "2,4,8").split(",")
    ]
    with tempfile.TemporaryDirectory(prefix="mlops-bench-spark-") as tmp:
        tracking_uri = f"sqlite:///{tmp}/mlflow.db"
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
        train(tracking_uri)
        sizes = sorted({rows, *rss_sizes})
        for n in sizes:
            generate(f"{tmp}/in-{n}", n)
        results: dict[str, object] = {}
        single = _child("single", tracking_uri, f"{tmp}/in-{rows}", f"{tmp}/single-{rows}.parquet")
        spark = _child("spark", tracking_uri, f"{tmp}/in-{rows}", f"{tmp}/spark-{rows}.parquet")
        assert single["rows"] == spark["rows"] == rows, (single, spark)
        results.update(
            {
                "spark_inference.rows": rows,
                "spark_inference.single_rows_per_s": round(rows / single["seconds"]),
                "spark_inference.spark_local2_rows_per_s": round(rows / spark["seconds"]),
                "spark_inference.spark_vs_single_throughput": round(single["seconds"] / spark["seconds"], 3),
                "spark_inference.single_peak_rss_mb": round(single["tree_peak_rss_mb"], 1),
                "spark_inference.spark_tree_peak_rss_mb": round(spark["tree_peak_rss_mb"], 1),
                "spark_inference.spark_driver_peak_rss_mb": round(spark["driver_peak_rss_mb"], 1),
            }
        )
        for n in rss_sizes:
            figures = (
                spark
                if n == rows
                else _child("spark", tracking_uri, f"{tmp}/in-{n}", f"{tmp}/spark-{n}.parquet")
            )
            results[f"spark_inference.driver_peak_rss_mb_{_label(n)}"] = round(
                figures["driver_peak_rss_mb"], 1
            )
        small, big = (
            results[f"spark_inference.driver_peak_rss_mb_{_label(n)}"]
            for n in (min(rss_sizes), max(rss_sizes))
        )
        results["spark_inference.driver_rss_growth"] = round(float(big) / float(small) - 1, 3)  # type: ignore[arg-type]
    emit(results)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, tracking_uri, src, dst = sys.argv[2:6]
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
        figures = (single_job if kind == "single" else spark_job)(tracking_uri, src, dst)
        print(json.dumps(figures))
    else:
        main()
