"""Routes of single trials, as WMLA's exec resource: ``/execs/{appId}`` with appId ``<hpoName>-<trial id>``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Path as PathParam, Response
from fastapi.responses import FileResponse, PlainTextResponse
from starlette.background import BackgroundTask

from broker.store import RedisStore, TaskRecord
from hpo_core.records import Trial, TrialState
from openhpo.api.deps import Caller, CallerDep, StoreDep
from openhpo.api.errors import NotFoundError
from openhpo.api.responses import error_responses
from openhpo.api.schemas import ExecInfo
from openhpo.status import NO_VALUE, experiment
from workers.runner import result_zip_key, zip_directory

router = APIRouter(prefix="/execs", tags=["execs"])

ExecId = Annotated[str, PathParam(description="the experiment's appId, <hpoName>-<experiment id>",
                                  examples=["Admin-hpo-1-0"])]


def parse_exec_id(exec_id: str) -> tuple[str, int]:
    """Split ``<hpoName>-<trial id>``; task names may contain '-', so the last one separates.

    Raises:
        NotFoundError: the id has no numeric trial part.
    """
    name, sep, trial = exec_id.rpartition("-")
    if not sep or not name or not trial.isdigit() or len(trial) > 9:
        raise NotFoundError(f"no exec {exec_id!r}: an exec id is <hpoName>-<experiment id>, as in the appId of "
                            "an experiment of GET /hypersearch/{hpoName}")
    return name, int(trial)


def _load(store: RedisStore, caller: Caller, exec_id: str) -> tuple[TaskRecord, Trial]:
    name, trial_id = parse_exec_id(exec_id)
    task = store.get_task(name)
    caller.check_owner(task)
    try:
        trial = store.get_trial(name, trial_id)
    except KeyError:
        raise NotFoundError(f"task {name} has no experiment {trial_id} (it has {task.next_trial})") from None
    return task, trial


@router.get("/{exec_id}", summary="Get a trial as an exec", response_model=ExecInfo,
            response_model_exclude_none=True, responses=error_responses(400, 401, 403, 404))
def get_exec(exec_id: ExecId, store: StoreDep, caller: CallerDep) -> dict[str, Any]:
    task, trial = _load(store, caller, exec_id)
    entry = experiment(task.name, trial)
    model_spec = task.spec.get("modelSpec") or {}
    result_dir = store.trial_extras(task.name, trial.id).get("result_dir")
    app_id = f"{task.name}-{trial.id}"
    info: dict[str, Any] = {
        "appId": app_id,
        "id": app_id,
        "state": "WAITING" if trial.state is TrialState.QUEUED else trial.state.value,
        "hpoName": task.name,
        "experimentId": trial.id,
        "attempt": trial.attempt,
        "args": model_spec.get("args", "") if isinstance(model_spec, dict) else "",
        "sigId": model_spec.get("sigName") if isinstance(model_spec, dict) else None,
        "submissionId": f"{app_id}-attempt-{trial.attempt}",
        "userName": task.creator,
        "hyperParams": dict(trial.config),
        "metricVal": entry["metricVal"] if entry["metricVal"] is not None else NO_VALUE,
        "startTime": entry.get("startTime"),
        "endTime": entry.get("endTime"),
        "reason": trial.reason,
        "exitCode": trial.exit_code,
        "worker": trial.worker,
        "resultDir": result_dir or None,
    }
    if not isinstance(info["sigId"], str):
        info["sigId"] = None
    return info


@router.get("/{exec_id}/log", summary="Get a trial's training log", response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
                       **error_responses(400, 401, 403, 404)})
def get_exec_log(exec_id: ExecId, store: StoreDep, caller: CallerDep) -> PlainTextResponse:
    """Return the standard output and error of the trial's latest attempt, also while it runs (renewed with each
    heartbeat); the last 1 MiB of it. Empty while the trial is queued."""
    task, trial = _load(store, caller, exec_id)
    text = store.get_log(task.name, trial.id)
    if text is None:
        result_dir = store.trial_extras(task.name, trial.id).get("result_dir")
        local = Path(result_dir) / "log" / "stdout" if result_dir else None
        if local is not None and local.is_file():
            text = local.read_bytes()[-1024 * 1024:]
    return PlainTextResponse((text or b"").decode("utf-8", errors="replace"),
                             headers={"X-Trial-State": trial.state.value, "X-Attempt": str(trial.attempt)})


@router.get("/{exec_id}/result", summary="Download a trial's result directory as a zip",
            response_class=Response,
            responses={200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
                             "description": "RESULT_DIR of the latest attempt; Content-Disposition carries size="},
                       **error_responses(400, 401, 403, 404)})
def get_exec_result(exec_id: ExecId, store: StoreDep, caller: CallerDep) -> Response:
    """Send the trial's RESULT_DIR (val_dict_list.json, log/, model/, _submitted_code/) as a zip.

    When the directory is on this host (the API runs beside the worker, or shares its volume) it is zipped as it
    is now, also while the trial runs. Otherwise the zip that the worker stored in Redis at the end of the attempt
    is sent; workers store it up to OPENHPO_MAX_RESULT_ZIP_BYTES.
    """
    task, trial = _load(store, caller, exec_id)
    app_id = f"{task.name}-{trial.id}"
    result_dir = store.trial_extras(task.name, trial.id).get("result_dir")
    if result_dir and Path(result_dir).is_dir():
        return _zip_local(Path(result_dir), app_id, trial.attempt)

    stored = store.redis.hgetall(result_zip_key(store, task.name, trial.id))
    data = stored.get(b"zip")
    attempt = (stored.get(b"attempt") or b"0").decode()
    if data:
        return Response(data, media_type="application/zip", headers=_download_headers(app_id, len(data), attempt))
    if stored.get(b"error"):
        raise NotFoundError(f"the result of {app_id} is not in the store: {stored[b'error'].decode()}; it is on "
                            f"worker {trial.worker or '(unknown)'} under {result_dir or '(unknown)'}")
    if not trial.state.ended:
        raise NotFoundError(f"{app_id} is {trial.state.value}; its result is stored when the trial ends")
    raise NotFoundError(f"no result stored for {app_id}; it is on worker {trial.worker or '(unknown)'} under "
                        f"{result_dir or '(unknown)'}")


def _download_headers(app_id: str, size: int, attempt: str | int) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{app_id}.zip"; size={size}', "X-Attempt": str(attempt)}


def _zip_local(directory: Path, app_id: str, attempt: int) -> FileResponse:
    handle = tempfile.NamedTemporaryFile(prefix="openhpo-result-", suffix=".zip", delete=False)
    try:
        with handle:
            zip_directory(directory, handle)
        size = os.path.getsize(handle.name)
    except BaseException:
        os.unlink(handle.name)
        raise
    return FileResponse(handle.name, media_type="application/zip", headers=_download_headers(app_id, size, attempt),
                        background=BackgroundTask(os.unlink, handle.name))
