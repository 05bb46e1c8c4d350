"""The edt helpers for training scripts, as a plain process and in a real two-process gloo group."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import edt
from edt import training

ELASTIC_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RESTART_COUNT")


@pytest.fixture
def plain(monkeypatch, tmp_path):
    """A plain process: no elastic variables, RESULT_DIR in a temporary directory."""
    for name in ELASTIC_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RESULT_DIR", str(tmp_path))
    return tmp_path


def test_plain_process_is_rank_zero_of_one(plain):
    assert edt.setup() == torch.device("cpu")
    assert not dist.is_initialized()
    assert edt.rank() == 0
    assert edt.world_size() == 1
    assert edt.local_rank() == 0
    assert edt.is_main()
    assert not edt.is_elastic()
    assert edt.restart_count() == 0
    assert edt.mean_over_ranks(3.5) == 3.5
    model = torch.nn.Linear(2, 2)
    assert edt.wrap_model(model) is model
    edt.barrier()
    edt.teardown()


def test_plain_checkpoint_round_trip(plain):
    assert edt.load_checkpoint() is None
    edt.save_checkpoint({"weights": torch.arange(3)}, epoch=4)
    state, epoch = edt.load_checkpoint()
    assert epoch == 4
    assert torch.equal(state["weights"], torch.arange(3))
    assert edt.checkpoint_path() == plain / "checkpoint" / "edt-checkpoint.pt"
    assert list((plain / "checkpoint").iterdir()) == [edt.checkpoint_path()]


def test_plain_writes_val_dict_list(plain):
    edt.write_val_dict_list([{"steps": 1, "loss": 0.5}])
    assert json.loads((plain / "val_dict_list.json").read_text()) == [{"steps": 1, "loss": 0.5}]


def test_non_main_rank_writes_nothing(plain, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    edt.write_val_dict_list([{"steps": 1, "loss": 0.5}])
    edt.save_checkpoint({"x": 1}, epoch=1)
    assert list(plain.iterdir()) == []


def test_unknown_helper_raises_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        edt.missing  # noqa: B018


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _group_rank(rank: int, port: int, result_dirs: list[str], saved_epochs: list[int | None], out: str) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port), "RESULT_DIR": result_dirs[rank]})
    epoch = saved_epochs[rank]
    if epoch is not None:
        path = training.checkpoint_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"epoch": epoch, "state": {"from_rank": rank, "epoch": epoch}}, path)
    edt.setup()
    loaded = edt.load_checkpoint()
    report = {"rank": edt.rank(), "world_size": edt.world_size(), "mean": edt.mean_over_ranks(rank + 1),
              "loaded": None if loaded is None else [loaded[0], loaded[1]]}
    edt.write_val_dict_list([{"steps": 1, "rank": rank}])
    edt.teardown()
    Path(out, f"rank{rank}.json").write_text(json.dumps(report))


def _run_group(tmp_path: Path, saved_epochs: list[int | None], shared: bool) -> list[dict]:
    dirs = [tmp_path / "shared"] * 2 if shared else [tmp_path / "host0", tmp_path / "host1"]
    for directory in dirs:
        directory.mkdir(exist_ok=True)
    mp.start_processes(_group_rank, args=(_free_port(), [str(d) for d in dirs], saved_epochs, str(tmp_path)),
                       nprocs=2, join=True, start_method="spawn")
    return [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]


def test_group_sends_newest_checkpoint_to_every_rank(tmp_path):
    # As on two hosts without a shared disk: only rank 1 can read the newest checkpoint.
    reports = _run_group(tmp_path, saved_epochs=[2, 5], shared=False)
    assert [r["rank"] for r in reports] == [0, 1]
    assert [r["world_size"] for r in reports] == [2, 2]
    assert [r["mean"] for r in reports] == [1.5, 1.5]
    assert [r["loaded"] for r in reports] == [[{"from_rank": 1, "epoch": 5}, 5]] * 2
    assert json.loads((tmp_path / "host0" / "val_dict_list.json").read_text()) == [{"steps": 1, "rank": 0}]
    assert not (tmp_path / "host1" / "val_dict_list.json").exists()
