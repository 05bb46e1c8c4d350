"""Train an MLP classifier on scikit-learn's digits data set under the WMLA HPO training contract.

The script follows the contract every openhpo trial follows:

* it reads its hyperparameters from ``config.json`` in the current working directory, and falls back to
  defaults for missing keys or a missing file;
* it writes ``$RESULT_DIR/val_dict_list.json`` (the current directory when ``RESULT_DIR`` is unset), a JSON list
  with one ``{"steps": epoch, "loss": ..., "accuracy": ...}`` entry per epoch, computed on a held-out
  validation split. The file is replaced atomically after every epoch, so a coordinator can read intermediate
  results while the trial runs.

When the training loss stops being finite (for example SGD with a learning rate near 0.1), the script records
that epoch, whose ``loss`` is written as the JSON extension ``NaN``, and stops early with exit status 0.

The data set ships with scikit-learn (1,797 8x8 images, 10 classes), so nothing is downloaded. Run it by hand::

    echo '{"learning_rate": 0.005, "optimizer": "adam"}' > config.json
    RESULT_DIR=/tmp/digits python train.py --epochs 15
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

#: Default hyperparameters, used for the keys that ``config.json`` leaves out.
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
RESULT_FILE = "val_dict_list.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line. The ``epochs`` key of ``config.json`` overrides ``--epochs``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15,
                        help="number of passes over the training split (default: 15)")
    return parser.parse_args(argv)


def load_config(path: Path) -> dict[str, Any]:
    """Read ``config.json`` and cast each value, because WMLA may deliver numbers as strings.

    Raises:
        ValueError: when the file is not a JSON object, a value cannot be cast, or a value is out of range.
    """
    raw: dict[str, Any] = {}
    if path.exists():
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict):
            raise ValueError(f"{path} must contain a JSON object, got {type(raw).__name__}")
    else:
        print(f"{path} not found, using the default hyperparameters", flush=True)

    merged = {**DEFAULTS, **raw}
    config = {
        "learning_rate": float(merged["learning_rate"]),
        "hidden": int(float(merged["hidden"])),
        "dropout": float(merged["dropout"]),
        "optimizer": str(merged["optimizer"]).lower(),
        "batch_size": int(float(merged["batch_size"])),
    }
    # Hyperband delivers the budget as a hyperparameter, so it overrides the command line.
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


def load_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split the digits data 80/20 with a fixed seed and standardize the pixels with training-split statistics."""
    digits = load_digits()
    x_train, x_val, y_train, y_val = train_test_split(
        digits.data, digits.target, test_size=VALIDATION_FRACTION, random_state=SEED, stratify=digits.target)
    scaler = StandardScaler().fit(x_train)
    return (torch.tensor(scaler.transform(x_train), dtype=torch.float32),
            torch.tensor(y_train, dtype=torch.long),
            torch.tensor(scaler.transform(x_val), dtype=torch.float32),
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


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                batch_size: int, generator: torch.Generator) -> float:
    """Run one shuffled pass over the training split and return the mean training loss."""
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    order = torch.randperm(len(x), generator=generator)
    total = 0.0
    for start in range(0, len(x), batch_size):
        batch = order[start:start + batch_size]
        optimizer.zero_grad()
        loss = loss_fn(model(x[batch]), y[batch])
        loss.backward()
        optimizer.step()
        total += loss.item() * len(batch)
    return total / len(x)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Return the mean cross-entropy loss and the accuracy on ``x``, ``y``."""
    model.eval()
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, y).item()
    accuracy = (logits.argmax(dim=1) == y).float().mean().item()
    return loss, accuracy


def write_results(path: Path, entries: list[dict[str, float]]) -> None:
    """Replace ``path`` atomically, so that a reader sees either the previous list or the new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(entries))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = load_config(Path("config.json"))
    epochs = config.get("epochs", args.epochs)
    if epochs < 1:
        raise ValueError(f"epochs {epochs} is invalid. It must be at least 1")

    # Several trials usually share a small machine, so use one thread unless the caller chose a count.
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED)

    result_dir = Path(os.environ.get("RESULT_DIR") or ".")
    result_dir.mkdir(parents=True, exist_ok=True)
    result_path = result_dir / RESULT_FILE

    x_train, y_train, x_val, y_val = load_data()
    model = build_model(x_train.shape[1], config["hidden"], config["dropout"], classes=10)
    optimizer = build_optimizer(config["optimizer"], model.parameters(), config["learning_rate"])
    print(f"config {json.dumps(config, sort_keys=True)}, epochs {epochs}, "
          f"{len(x_train)} training and {len(x_val)} validation samples", flush=True)

    entries: list[dict[str, float]] = []
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        train_loss = train_epoch(model, optimizer, x_train, y_train, config["batch_size"], generator)
        val_loss, val_accuracy = evaluate(model, x_val, y_val)
        entries.append({"steps": epoch, "loss": val_loss, "accuracy": val_accuracy})
        write_results(result_path, entries)
        print(f"epoch {epoch}/{epochs}: train loss {train_loss:.4f}, val loss {val_loss:.4f}, "
              f"val accuracy {val_accuracy:.4f}, {time.perf_counter() - started:.1f}s", flush=True)
        if not math.isfinite(train_loss):
            print(f"training diverged at epoch {epoch}, stopping early", flush=True)
            break

    print(f"wrote {result_path} ({len(entries)} epochs)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
