"""Synthetic churn data for the example lifecycle and the demo: generated locally, nothing downloaded.

The label depends on the features through a fixed logistic model, so a model can learn it; ``drift`` shifts
the distribution of three columns (``tenure_months``, ``monthly_charges``, ``support_calls``) so that drift
detection has something real to find, while the other columns keep their distribution.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

FEATURES = [
    "tenure_months",
    "monthly_charges",
    "support_calls",
    "age",
    "data_usage_gb",
    "contract_years",
    "late_payments",
    "satisfaction",
]
TARGET = "churned"
ID_COLUMN = "customer_id"
DRIFTED_COLUMNS = ["tenure_months", "monthly_charges", "support_calls"]


def make_churn_frame(rows: int, *, seed: int, drift: float = 0.0, id_offset: int = 0) -> pd.DataFrame:
    """``rows`` customers; ``drift`` in [0, 1] moves the DRIFTED_COLUMNS (0 = training distribution)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    tenure = rng.gamma(2.0, 12.0, rows) * (1.0 - 0.6 * drift)
    charges = rng.normal(65.0 + 35.0 * drift, 18.0, rows).clip(10, None)
    calls = rng.poisson(1.5 + 3.0 * drift, rows)
    frame = pd.DataFrame(
        {
            ID_COLUMN: np.arange(id_offset, id_offset + rows, dtype="int64"),
            "tenure_months": tenure.round(1),
            "monthly_charges": charges.round(2),
            "support_calls": calls.astype("int64"),
            "age": rng.integers(18, 80, rows).astype("int64"),
            "data_usage_gb": rng.lognormal(2.0, 0.6, rows).round(2),
            "contract_years": rng.choice([0, 1, 2], rows, p=[0.55, 0.3, 0.15]).astype("int64"),
            "late_payments": rng.poisson(0.4, rows).astype("int64"),
            "satisfaction": rng.uniform(1.0, 5.0, rows).round(2),
        }
    )
    logit = (
        -1.0
        - 0.045 * frame["tenure_months"]
        + 0.03 * (frame["monthly_charges"] - 65.0)
        + 0.45 * frame["support_calls"]
        - 0.8 * frame["contract_years"]
        + 0.35 * frame["late_payments"]
        - 0.5 * (frame["satisfaction"] - 3.0)
    )
    prob = 1.0 / (1.0 + np.exp(-logit))
    frame[TARGET] = (rng.uniform(size=rows) < prob).astype("int64")
    return frame


def write_example_data(base_uri: str, *, train_rows: int = 4000, batch_rows: int = 2000) -> dict[str, str]:
    """
    Write the example datasets under ``base_uri`` and return their URIs: ``train`` (labelled, training
    distribution), ``train_recent`` (labelled, drifted: what retraining learns from), ``batch_normal`` and
    ``batch_drifted`` (unlabelled scoring batches).
    """
    from airflow_mlops.core.storage import atomic_local_path, join_uri

    out = {}
    frames = {
        "train": make_churn_frame(train_rows, seed=7),
        "train_recent": make_churn_frame(train_rows, seed=17, drift=1.0, id_offset=300_000),
        "batch_normal": make_churn_frame(batch_rows, seed=11, id_offset=100_000).drop(columns=[TARGET]),
        "batch_drifted": make_churn_frame(batch_rows, seed=13, drift=1.0, id_offset=200_000).drop(
            columns=[TARGET]
        ),
    }
    for name, frame in frames.items():
        uri = join_uri(base_uri, f"{name}.parquet")
        with atomic_local_path(uri, suffix=".parquet") as tmp:
            frame.to_parquet(tmp, index=False)
        out[name] = uri
    return out
