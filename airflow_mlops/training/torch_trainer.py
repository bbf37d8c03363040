"""Train the built-in tabular MLP: CUDA when present, mixed precision, early stopping, checkpoint/resume.

The loop knows nothing about MLflow: the runner passes ``on_epoch`` (log metrics) and a checkpoint writer.
Resuming restores the model, optimizer, grad scaler, early-stopping state and every RNG, so a run restarted
after epoch k continues with epoch k+1 exactly as if it had not stopped.
"""

from __future__ import annotations

import copy
import logging
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from airflow_mlops.core.training_spec import AmpMode, Device, TaskType, TorchMlpParams, greater_is_better
from airflow_mlops.training.metrics import compute_metrics
from airflow_mlops.training.torch_model import build_network, model_config

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_mlops.training.data import PreparedData

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Precision:
    """How the forward pass runs: device, autocast dtype (None = fp32) and whether a grad scaler is used."""

    device: torch.device
    autocast_dtype: torch.dtype | None
    grad_scaler: bool

    @property
    def label(self) -> str:
        if self.autocast_dtype is None:
            return f"{self.device.type}-fp32"
        name = "bf16" if self.autocast_dtype == torch.bfloat16 else "fp16"
        return f"{self.device.type}-{name}{'+gradscaler' if self.grad_scaler else ''}"


def choose_precision(params: TorchMlpParams) -> Precision:
    """
    CUDA when available (unless ``device=cpu``); on CUDA, bf16 autocast where the GPU supports it, else fp16
    with a grad scaler. On CPU the default is fp32; ``amp=bf16`` asks for CPU bf16 autocast explicitly.
    """
    cuda = torch.cuda.is_available()
    if params.device is Device.CUDA and not cuda:
        log.warning("device=cuda was asked for but CUDA is not available here; training on CPU")
    use_cuda = cuda and params.device is not Device.CPU
    if not use_cuda:
        if params.amp is AmpMode.BF16:
            return Precision(torch.device("cpu"), torch.bfloat16, False)
        if params.amp is AmpMode.FP16:
            log.warning("amp=fp16 needs CUDA; training in fp32 on CPU")
        return Precision(torch.device("cpu"), None, False)
    device = torch.device("cuda")
    if params.amp is AmpMode.OFF:
        return Precision(device, None, False)
    bf16_ok = torch.cuda.is_bf16_supported()
    if params.amp is AmpMode.FP16 or (params.amp is AmpMode.AUTO and not bf16_ok):
        return Precision(device, torch.float16, True)
    if params.amp is AmpMode.BF16 and not bf16_ok:
        log.warning("amp=bf16 is not supported by this GPU; using fp16 with a grad scaler")
        return Precision(device, torch.float16, True)
    return Precision(device, torch.bfloat16, False)


@dataclass
class EarlyStopping:
    """Tracks the best value of the monitored validation metric and the epochs since it improved."""

    monitor: str
    higher_is_better: bool
    patience: int
    min_delta: float
    best: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0

    def update(self, value: float, epoch: int) -> bool:
        """Record ``value``; True when it is a new best."""
        improved = self.best is None or (
            value > self.best + self.min_delta
            if self.higher_is_better
            else value < self.best - self.min_delta
        )
        if improved:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience

    def state(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]


@dataclass
class MlpOutcome:
    """The trained model and what happened during training."""

    state_dict: dict[str, Any]
    config: dict[str, Any]
    metrics: dict[str, float]
    epochs_completed: int
    best_epoch: int
    stopped_early: bool
    precision: str
    resumed_from_epoch: int
    samples_per_s: list[float] = field(default_factory=list)


def _labels_to_index(y: Any, classes: list[Any]) -> torch.Tensor:
    index = {c: i for i, c in enumerate(classes)}
    return torch.tensor([index[v] for v in y.tolist()], dtype=torch.long)


def _capture_rng(generator: torch.Generator) -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "shuffle": generator.get_state(),
        "python": list(random.getstate()[1]),
    }
    numpy_state: Any = np.random.get_state()
    _, keys, pos, has_gauss, cached = numpy_state
    state["numpy"] = {
        "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)),
        "pos": int(pos),
        "gauss": [int(has_gauss), float(cached)],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["shuffle"])
    random.setstate((3, tuple(state["python"]), None))
    saved = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            saved["keys"].numpy().astype(np.uint32),
            saved["pos"],
            saved["gauss"][0],
            saved["gauss"][1],
        )
    )
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train_mlp(  # noqa: C901 - the training loop (AMP, checkpoints, early stopping, resume) reads best in one piece
    data: PreparedData,
    params: TorchMlpParams,
    metrics: list[str],
    *,
    seed: int,
    resume: dict[str, Any] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    save_checkpoint: Callable[[dict[str, Any]], None] | None = None,
) -> MlpOutcome:
    """
    Train, validating after every epoch; ``save_checkpoint(state)`` runs after each epoch, before ``on_epoch``.

    ``resume`` is a checkpoint written by an earlier call for the same spec and data.
    """
    task = data.task
    classification = task is TaskType.CLASSIFICATION
    precision = choose_precision(params)
    device = precision.device
    log.info("Training the MLP on %s (%s)", device, precision.label)

    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    generator = torch.Generator().manual_seed(seed)

    x_train = torch.from_numpy(data.x_train.to_numpy(dtype=np.float32))
    x_val = torch.from_numpy(data.x_val.to_numpy(dtype=np.float32))
    target_mean, target_scale = 0.0, 1.0
    if classification:
        assert data.classes is not None
        y_train = _labels_to_index(data.y_train, data.classes)
        y_val = _labels_to_index(data.y_val, data.classes)
    else:
        y_np = data.y_train.to_numpy(dtype=np.float64)
        target_mean = float(y_np.mean())
        target_scale = float(y_np.std()) or 1.0
        y_train = torch.from_numpy(((y_np - target_mean) / target_scale).astype(np.float32))
        y_val = torch.from_numpy(
            ((data.y_val.to_numpy(dtype=np.float64) - target_mean) / target_scale).astype(np.float32)
        )

    config = model_config(
        features=data.features,
        task=task.value,
        classes=data.classes,
        hidden_layers=list(params.hidden_layers),
        activation=params.activation,
        dropout=params.dropout,
        target_mean=target_mean,
        target_scale=target_scale,
    )
    net = build_network(config)
    if params.standardize:
        mean = x_train.mean(dim=0)
        scale = x_train.std(dim=0, unbiased=False)
        scale[scale == 0] = 1.0
        net.mean.copy_(mean)  # type: ignore[operator]
        net.scale.copy_(scale)  # type: ignore[operator]
    net.to(device)
    optimizer = _optimizer(params, net)
    scaler = torch.amp.GradScaler("cuda", enabled=precision.grad_scaler)
    loss_fn: nn.Module = nn.CrossEntropyLoss() if classification else nn.MSELoss()

    monitor = params.monitor or metrics[0]
    stopper = EarlyStopping(
        monitor=monitor,
        higher_is_better=greater_is_better(monitor),
        patience=params.patience,
        min_delta=params.min_delta,
    )
    best_state: dict[str, Any] | None = None
    history: list[dict[str, Any]] = []
    start_epoch = 1
    if resume is not None:
        net.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        if resume.get("scaler"):
            scaler.load_state_dict(resume["scaler"])
        stopper.load(resume["early_stopping"])
        best_state = resume.get("best_model")
        history = list(resume.get("history", []))
        _restore_rng(resume["rng"], generator)
        start_epoch = int(resume["epoch"]) + 1
        log.info(
            "Resuming from the checkpoint of epoch %s: continuing at epoch %s", resume["epoch"], start_epoch
        )

    pin = device.type == "cuda"
    if pin:
        x_train, y_train = x_train.pin_memory(), y_train.pin_memory()
    n = len(x_train)
    throughput: list[float] = []
    stopped_early = stopper.should_stop
    for epoch in range(start_epoch, params.epochs + 1):
        if stopped_early:
            break
        net.train()
        started = time.perf_counter()
        order = torch.randperm(n, generator=generator)
        total_loss, seen = 0.0, 0
        for begin in range(0, n, params.batch_size):
            idx = order[begin : begin + params.batch_size]
            xb = x_train[idx].to(device, non_blocking=pin)
            yb = y_train[idx].to(device, non_blocking=pin)
            with torch.autocast(
                device.type,
                dtype=precision.autocast_dtype or torch.float32,
                enabled=precision.autocast_dtype is not None,
            ):
                out = net(xb)
            loss = loss_fn(out.float() if classification else out.float()[:, 0], yb)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total_loss += float(loss.detach()) * len(idx)
            seen += len(idx)
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
        throughput.append(seen / elapsed if elapsed > 0 else float("inf"))
        val_loss, val_metrics = _evaluate(net, x_val, y_val, data, config, metrics, loss_fn, precision)
        epoch_metrics = {"epoch_train_loss": total_loss / max(seen, 1), "epoch_val_loss": val_loss}
        epoch_metrics.update({f"epoch_val_{k}": v for k, v in val_metrics.items()})
        epoch_metrics["epoch_samples_per_s"] = throughput[-1]
        monitored = val_loss if monitor == "loss" else val_metrics.get(monitor)
        if monitored is None:
            monitored = val_loss
        if stopper.update(float(monitored), epoch):
            best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        stopped_early = stopper.should_stop
        history.append({"epoch": epoch, "metrics": epoch_metrics})
        if save_checkpoint is not None:
            save_checkpoint(
                {
                    "epoch": epoch,
                    "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
                    "optimizer": _cpu(optimizer.state_dict()),
                    "scaler": scaler.state_dict() if precision.grad_scaler else {},
                    "early_stopping": stopper.state(),
                    "best_model": best_state,
                    "rng": _capture_rng(generator),
                    "history": history,
                    "done": False,
                }
            )
        log.info(
            "epoch %s/%s train_loss=%.5f val_loss=%.5f %s=%s%s",
            epoch,
            params.epochs,
            epoch_metrics["epoch_train_loss"],
            val_loss,
            monitor,
            round(float(monitored), 6),
            " (early stop)" if stopped_early else "",
        )
        if on_epoch is not None:
            on_epoch(epoch, epoch_metrics)
    completed = history[-1]["epoch"] if history else 0

    if best_state is not None:
        net.load_state_dict(best_state)
    _, final = _evaluate(net, x_val, y_val, data, config, metrics, loss_fn, precision)
    return MlpOutcome(
        state_dict={k: v.detach().cpu() for k, v in net.state_dict().items()},
        config=config,
        metrics=final,
        epochs_completed=int(completed),
        best_epoch=stopper.best_epoch,
        stopped_early=stopped_early,
        precision=precision.label,
        resumed_from_epoch=start_epoch - 1,
        samples_per_s=throughput,
    )


def _optimizer(params: TorchMlpParams, net: nn.Module) -> torch.optim.Optimizer:
    if params.optimizer == "sgd":
        return torch.optim.SGD(
            net.parameters(), lr=params.learning_rate, momentum=0.9, weight_decay=params.weight_decay
        )
    if params.optimizer == "adam":
        return torch.optim.Adam(net.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay)
    return torch.optim.AdamW(net.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay)


def _cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_cpu(v) for v in value)
    return copy.copy(value)


def _evaluate(
    net: nn.Module,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    data: PreparedData,
    config: dict[str, Any],
    metrics: list[str],
    loss_fn: nn.Module,
    precision: Precision,
    batch_size: int = 65536,
) -> tuple[float, dict[str, float]]:
    device = precision.device
    net.eval()
    outputs = []
    with torch.no_grad():
        for begin in range(0, len(x_val), batch_size):
            xb = x_val[begin : begin + batch_size].to(device)
            with torch.autocast(
                device.type,
                dtype=precision.autocast_dtype or torch.float32,
                enabled=precision.autocast_dtype is not None,
            ):
                outputs.append(net(xb).float().cpu())
    out = torch.cat(outputs)
    classification = data.task is TaskType.CLASSIFICATION
    val_loss = float(loss_fn(out if classification else out[:, 0], y_val))
    if classification:
        proba = torch.softmax(out, dim=1).numpy()
        classes = np.asarray(data.classes)
        y_pred = classes[proba.argmax(axis=1)]
        values = compute_metrics(metrics, data.task, data.y_val, y_pred, proba, data.classes)
    else:
        y_pred = out[:, 0].numpy().astype(np.float64) * config["target_scale"] + config["target_mean"]
        values = compute_metrics(metrics, data.task, data.y_val, y_pred)
    return val_loss, values
