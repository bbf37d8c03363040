"""PyTorch MLP training throughput with and without mixed precision, on the same data in the same run.

Runs the production training loop (``airflow_mlops.training.torch_trainer.train_mlp``) without MLflow on a
generated classification dataset. On a CUDA machine the baseline is fp32 on the GPU and the candidate is the
automatic AMP choice (bf16 autocast where the GPU supports it, else fp16 with a grad scaler). Without CUDA the
candidate is CPU bf16 autocast (``amp=bf16``), which is what AMP can mean on a CPU; the report says which.

    python bench/training.py [--rows 20000] [--features 64] [--epochs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pandas as pd
import torch

from airflow_mlops.core.training_spec import TaskType, TorchMlpParams
from airflow_mlops.training.data import PreparedData
from airflow_mlops.training.torch_trainer import choose_precision, train_mlp
from bench.common import emit, peak_rss_mb


def make_data(rows: int, features: int, seed: int = 0) -> PreparedData:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    weights = rng.normal(size=features)
    y = np.where(x @ weights + rng.normal(scale=0.5, size=rows) > 0, 1, 0)
    cols = [f"f{i}" for i in range(features)]
    split = int(rows * 0.9)
    frame = pd.DataFrame(x, columns=cols)
    return PreparedData(
        dataset_uri="memory://bench",
        fingerprint="bench",
        task=TaskType.CLASSIFICATION,
        features=cols,
        target="y",
        x_train=frame.iloc[:split].reset_index(drop=True),
        x_val=frame.iloc[split:].reset_index(drop=True),
        y_train=pd.Series(y[:split]),
        y_val=pd.Series(y[split:]),
        classes=[0, 1],
    )


def measure(data: PreparedData, base: dict, amp: str) -> tuple[str, float, float]:
    params = TorchMlpParams.from_params({**base, "amp": amp})
    label = choose_precision(params).label
    out = train_mlp(data, params, ["accuracy"], seed=0)
    steady = out.samples_per_s[1:] or out.samples_per_s  # the first epoch pays for warm-up
    return label, statistics.median(steady), out.metrics["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1024)
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    data = make_data(args.rows, args.features)
    base = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "hidden_layers": [256, 256],
        "patience": 0,
        "learning_rate": 1e-3,
    }
    fp32_label, fp32_rate, fp32_acc = measure(data, base, "off")
    amp_label, amp_rate, amp_acc = measure(data, base, "auto" if cuda else "bf16")
    emit(
        {
            "device": torch.cuda.get_device_name(0) if cuda else f"cpu ({torch.get_num_threads()} threads)",
            "torch": torch.__version__,
            "rows_x_features": f"{args.rows}x{args.features}",
            "baseline": fp32_label,
            "baseline_samples_per_s": round(fp32_rate),
            "amp": amp_label + ("" if cuda else " (CUDA unavailable: CPU bf16 autocast stands in for AMP)"),
            "amp_samples_per_s": round(amp_rate),
            "amp_vs_fp32_throughput_ratio": round(amp_rate / fp32_rate, 2),
            "val_accuracy_fp32": round(fp32_acc, 4),
            "val_accuracy_amp": round(amp_acc, 4),
            "peak_rss_mb": round(peak_rss_mb()),
        }
    )


if __name__ == "__main__":
    main()
