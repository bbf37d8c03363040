"""The Spark application of the Spark scoring backend: ``spark-submit spark_job.py --spec '<json>'``.

It imports only PySpark and MLflow (the cluster's image needs neither Airflow nor this provider), so the file
can be shipped to any cluster as it is. The spec comes from
:meth:`airflow_mlops.core.scoring.spark.SparkScoringJob.job_spec`: the pinned ``models:/<name>/<version>``, the
input paths, the staging folder, the signature's feature columns, the passthrough columns and the prediction's
Spark type and width.

The job checks the data's schema against the features again (the data may have changed since the task looked)
and exits with code 2 before writing anything when it does not fit; otherwise it scores with
``mlflow.pyfunc.spark_udf`` and writes the staging folder with Spark's commit protocol (``_SUCCESS`` last).
The tracking server comes from ``MLFLOW_TRACKING_URI`` (and credentials) in the driver's environment; the model
is downloaded once, on the driver, and shipped to the executors by MLflow.
"""

from __future__ import annotations

import json
import sys
from typing import Any

EXIT_BAD_INPUT = 2
ERROR_MARKER = "MLOPS_SCORING_ERROR"

# MLflow column type -> Spark SQL types that feed it without loss (the single-machine check's rules)
_ACCEPTS = {
    "double": {"double", "float", "int", "smallint", "tinyint"},
    "float": {"float", "smallint", "tinyint"},
    "long": {"bigint", "int", "smallint", "tinyint"},
    "integer": {"int", "smallint", "tinyint"},
    "boolean": {"boolean"},
    "string": {"string"},
    "binary": {"binary"},
    "datetime": {"timestamp", "timestamp_ntz", "date"},
    "numeric": {"double", "float", "bigint", "int", "smallint", "tinyint", "boolean"},
}


def schema_problems(
    fields: dict[str, str], features: list[dict[str, Any]], passthrough: list[str]
) -> list[str]:
    """What keeps data with Spark column types ``fields`` (name -> simpleString) from fitting the features."""
    missing = [f["name"] for f in features if f.get("required", True) and f["name"] not in fields]
    bad = [
        f"{f['name']} ({fields[f['name']]}, signature wants {f['type']})"
        for f in features
        if f["name"] in fields and f["type"] in _ACCEPTS and fields[f["name"]] not in _ACCEPTS[f["type"]]
    ]
    problems = []
    if missing:
        problems.append(f"missing column(s) {missing}")
    if bad:
        problems.append(f"column(s) with types the signature rejects: {', '.join(bad)}")
    missing_pass = [c for c in passthrough if c not in fields]
    if missing_pass:
        problems.append(f"missing passthrough column(s) {missing_pass}")
    return problems


def run(spec: dict[str, Any]) -> int:
    import mlflow.pyfunc
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    spark = SparkSession.builder.appName(spec["app_name"]).getOrCreate()
    try:
        reader = spark.read
        if spec.get("recursive"):
            reader = reader.option("recursiveFileLookup", "true")
        frame = reader.parquet(*spec["input_paths"])
        fields = {f.name: f.dataType.simpleString() for f in frame.schema.fields}
        features = spec["features"]
        passthrough = list(spec["passthrough"])
        problems = schema_problems(fields, features, passthrough)
        if problems:
            print(
                f"{ERROR_MARKER} the input does not fit model {spec['model_uri']}: {'; '.join(problems)}. "
                f"It has {sorted(fields)}; fix the data or score with a model whose signature matches.",
                file=sys.stderr,
                flush=True,
            )
            return EXIT_BAD_INPUT
        width = int(spec.get("prediction_width") or 1)
        kind = spec.get("prediction_type") or "double"
        result_type = kind if width == 1 else f"array<{kind}>"
        udf = mlflow.pyfunc.spark_udf(spark, spec["model_uri"], result_type=result_type, env_manager="local")
        present = [f["name"] for f in features if f["name"] in fields]
        scored = udf(F.struct(*[F.col(name) for name in present]))
        column = spec["prediction_column"]
        if width == 1:
            predictions = [scored.alias(column)]
        else:
            holder = f"__{column}"
            frame = frame.withColumn(holder, scored)
            predictions = [F.col(holder)[i].alias(f"{column}_{i}") for i in range(width)]
        out = frame.select(*[F.col(c) for c in passthrough], *predictions)
        out.write.mode("overwrite").option("compression", "snappy").parquet(spec["staging_path"])
        return 0
    finally:
        spark.stop()


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "--spec":
        print(f"{ERROR_MARKER} usage: spark_job.py --spec '<json>'", file=sys.stderr)
        return EXIT_BAD_INPUT
    return run(json.loads(args[1]))


if __name__ == "__main__":
    sys.exit(main())
