"""Small generated training tables (four numeric features and a label), shared by the unit and integration tiers."""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_frame(rows: int = 600, seed: int = 0, task: str = "classification") -> pd.DataFrame:
    """Features ``a``-``d``; ``label`` is "yes"/"no" (classification) or a float (regression) learnable from them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    frame = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    signal = 2.0 * x[:, 0] - x[:, 1] + 0.5 * x[:, 2]
    if task == "classification":
        frame["label"] = np.where(signal + rng.normal(scale=0.3, size=rows) > 0, "yes", "no")
    else:
        frame["label"] = 3.0 * signal + 10.0 + rng.normal(scale=0.1, size=rows)
    return frame
