"""A small elastic DDP job for the tests: ``--steps`` all-reduce steps of ``--step-seconds`` each, resumable.

Every rank records its pid and ``CUDA_VISIBLE_DEVICES`` in ``$RESULT_DIR/processes/``. Rank 0 checkpoints after
every step and writes one ``{"steps", "loss", "world_size"}`` entry per step to ``val_dict_list.json``, with
``loss`` equal to ``x`` squared from ``config.json``, so the result is known in advance.
"""

import argparse
import json
import os
import time

import torch
import torch.distributed as dist

import edt

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=5, help="number of steps (default: 5)")
parser.add_argument("--step-seconds", type=float, default=0.2, help="seconds per step (default: 0.2)")
args = parser.parse_args()

with open("config.json") as handle:
    config = json.load(handle)
loss = float(config.get("x", 0.0)) ** 2

edt.setup()
processes = edt.result_dir() / "processes"
processes.mkdir(parents=True, exist_ok=True)
(processes / f"{os.getpid()}.json").write_text(json.dumps({
    "rank": edt.rank(), "world_size": edt.world_size(), "slot": os.environ.get("OPENHPO_EDT_SLOT"),
    "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}))

entries, first = [], 1
resumed = edt.load_checkpoint()
if resumed is not None:
    state, done = resumed
    entries, first = state["entries"], done + 1
print(f"rank {edt.rank()} of {edt.world_size()} starts at step {first}", flush=True)

for step in range(first, args.steps + 1):
    total = torch.ones(1)
    if dist.is_initialized():
        dist.all_reduce(total)
    time.sleep(args.step_seconds)
    entries.append({"steps": step, "loss": loss, "world_size": int(total.item())})
    edt.write_val_dict_list(entries)
    edt.save_checkpoint({"entries": entries}, step)

edt.teardown()
