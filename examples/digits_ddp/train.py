"""Train the digits MLP with DistributedDataParallel as an elastic openhpo trial, or as one plain process.

The model, data split and hyperparameters are those of ``examples/digits/train.py``. What changes for elastic
distributed training, through the ``edt`` helpers:

* ``edt.setup()`` joins the process group that torch's elastic agent set up (gloo on the CPU, NCCL on GPUs);
* a ``DistributedSampler`` gives each rank its share of the training split, and each rank's batch is
  ``batch_size / world_size``, so one optimizer step still uses ``batch_size`` samples;
* rank 0 saves a checkpoint after every epoch (model, optimizer and the metrics so far), and every rank resumes
  from it when the agent restarts the script after a member joined or was lost;
* rank 0 writes ``$RESULT_DIR/val_dict_list.json``, one ``{"steps", "loss", "accuracy"}`` entry per epoch.

Run as a plain process (``python train.py``) it trains alone with the same code. ``--epoch-seconds`` pads every
epoch to at least that long, so a benchmark or a test can stop a member in the middle of training.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import edt

DEFAULTS: dict[str, Any] = {
    "learning_rate": 0.005,
    "hidden": 128,
    "dropout": 0.1,
    "optimizer": "adam",
    "batch_size": 32,
}
OPTIMIZERS = ("sgd", "adam", "adamw")
SEED = 0
VALIDATION_FRACTION = 0.2
SGD_MOMENTUM = 0.9


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line. The ``epochs`` key of ``config.json`` overrides ``--epochs``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15,
                        help="number of passes over the training split (default: 15)")
    parser.add_argument("--epoch-seconds", type=float, default=0.0,
                        help="pad every epoch to at least this many seconds (default: 0, no padding)")
    return parser.parse_args(argv)


def load_config(path: Path) -> dict[str, Any]:
    """Read ``config.json`` and cast each value, because WMLA may deliver numbers as strings.

    Raises:
        ValueError: when the file is not a JSON object, a value cannot be cast, or a value is out of range.
    """
    raw: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must contain a JSON object, got {type(raw).__name__}")
    merged = {**DEFAULTS, **raw}
    config = {
        "learning_rate": float(merged["learning_rate"]),
        "hidden": int(float(merged["hidden"])),
        "dropout": float(merged["dropout"]),
        "optimizer": str(merged["optimizer"]).lower(),
        "batch_size": int(float(merged["batch_size"])),
    }
    if "epochs" in raw:
        config["epochs"] = int(float(raw["epochs"]))
    if config["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"optimizer {merged['optimizer']!r} is invalid. Use one of {', '.join(OPTIMIZERS)}")
    if not 0.0 <= config["dropout"] < 1.0:
        raise ValueError(f"dropout {config['dropout']} is invalid. It must be at least 0 and below 1")
    for key in ("learning_rate", "hidden", "batch_size"):
        if config[key] <= 0:
            raise ValueError(f"{key} {config[key]} is invalid. It must be positive")
    return config


def load_data() -> tuple[TensorDataset, torch.Tensor, torch.Tensor]:
    """Split the digits data 80/20 with a fixed seed; standardize with the training split's statistics."""
    digits = load_digits()
    x_train, x_val, y_train, y_val = train_test_split(
        digits.data, digits.target, test_size=VALIDATION_FRACTION, random_state=SEED, stratify=digits.target)
    scaler = StandardScaler().fit(x_train)
    train = TensorDataset(torch.tensor(scaler.transform(x_train), dtype=torch.float32),
                          torch.tensor(y_train, dtype=torch.long))
    return (train, torch.tensor(scaler.transform(x_val), dtype=torch.float32),
            torch.tensor(y_val, dtype=torch.long))


def build_model(inputs: int, hidden: int, dropout: float, classes: int) -> nn.Module:
    """Build an MLP with two hidden layers of width ``hidden``, each followed by ReLU and dropout."""
    return nn.Sequential(
        nn.Linear(inputs, hidden), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(hidden, classes),
    )


def build_optimizer(name: str, params: Any, learning_rate: float) -> torch.optim.Optimizer:
    """Create the optimizer named in the config. SGD uses momentum 0.9."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=learning_rate, momentum=SGD_MOMENTUM)
    if name == "adam":
        return torch.optim.Adam(params, lr=learning_rate)
    return torch.optim.AdamW(params, lr=learning_rate)


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader,
                device: torch.device) -> float:
    """Run one pass over this rank's share of the training split; return the mean loss over all ranks."""
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    total, count = 0.0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(y)
        count += len(y)
    return edt.mean_over_ranks(total / max(count, 1))


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> tuple[float, float]:
    """Return the mean cross-entropy loss and the accuracy on the whole validation split."""
    model.eval()
    logits = model(x.to(device))
    loss = nn.functional.cross_entropy(logits, y.to(device)).item()
    accuracy = (logits.argmax(dim=1) == y.to(device)).float().mean().item()
    return loss, accuracy


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = load_config(Path("config.json"))
    epochs = config.get("epochs", args.epochs)
    if epochs < 1:
        raise ValueError(f"epochs {epochs} is invalid. It must be at least 1")
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)

    device = edt.setup()
    rank, world = edt.rank(), edt.world_size()
    torch.manual_seed(SEED)
    train, x_val, y_val = load_data()
    model = build_model(train.tensors[0].shape[1], config["hidden"], config["dropout"], classes=10).to(device)
    optimizer = build_optimizer(config["optimizer"], model.parameters(), config["learning_rate"])

    entries: list[dict[str, float]] = []
    first_epoch = 1
    resumed = edt.load_checkpoint(map_location=device)
    if resumed is not None:
        state, done = resumed
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        entries = state["entries"]
        first_epoch = done + 1
    # Wrap after loading, so that DDP broadcasts the same weights from rank 0 to every rank.
    ddp_model = edt.wrap_model(model, device)

    sampler = DistributedSampler(train, num_replicas=world, rank=rank, shuffle=True, seed=SEED)
    batch = max(1, config["batch_size"] // world)
    loader = DataLoader(train, batch_size=batch, sampler=sampler)
    print(f"rank {rank} of {world}, restart {edt.restart_count()}, epochs {first_epoch}..{epochs}, "
          f"batch {batch} per rank, config {json.dumps(config, sort_keys=True)}", flush=True)

    started = time.perf_counter()
    for epoch in range(first_epoch, epochs + 1):
        epoch_start = time.perf_counter()
        sampler.set_epoch(epoch)
        train_loss = train_epoch(ddp_model, optimizer, loader, device)
        val_loss, val_accuracy = evaluate(model, x_val, y_val, device)
        entries.append({"steps": epoch, "loss": val_loss, "accuracy": val_accuracy, "world_size": world})
        edt.write_val_dict_list(entries)
        edt.save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "entries": entries}, epoch)
        padding = args.epoch_seconds - (time.perf_counter() - epoch_start)
        if padding > 0:
            time.sleep(padding)
        if edt.is_main():
            print(f"epoch {epoch}/{epochs}: train loss {train_loss:.4f}, val loss {val_loss:.4f}, "
                  f"val accuracy {val_accuracy:.4f}, world {world}, {time.perf_counter() - started:.2f}s",
                  flush=True)
        if not math.isfinite(train_loss):
            print(f"training diverged at epoch {epoch}, stopping early", flush=True)
            break

    edt.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
