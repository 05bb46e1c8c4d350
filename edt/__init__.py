"""Elastic distributed trials: gang start, rendezvous through Redis, torch elastic launch, and training helpers.

Training scripts import the helpers from here (see :mod:`edt.training`)::

    import edt

    device = edt.setup()
    resumed = edt.load_checkpoint()
    ...
    edt.save_checkpoint(state, epoch)
    edt.write_val_dict_list(entries)
    edt.teardown()

The helpers import torch on first use, so the worker side (:mod:`edt.gang`, :mod:`edt.store`) stays free of it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "barrier",
    "checkpoint_path",
    "device",
    "is_elastic",
    "is_main",
    "load_checkpoint",
    "local_rank",
    "mean_over_ranks",
    "rank",
    "restart_count",
    "result_dir",
    "save_checkpoint",
    "setup",
    "teardown",
    "world_size",
    "wrap_model",
    "write_val_dict_list",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from edt import training

        return getattr(training, name)
    raise AttributeError(f"module 'edt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
