"""Routes of HPO tasks: ``/hypersearch``, WMLA's resource name for them."""

from __future__ import annotations

import tarfile
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from broker.store import RedisStore
from hpo_core.errors import SpecError, StateConflictError, TaskExistsError
from hpo_core.records import TaskState
from hpo_core.spec import TaskSpec, check_name
from openhpo.api.deps import Caller, CallerDep, SettingsDep, StoreDep
from openhpo.api.errors import already_stopped
from openhpo.api.responses import error_responses
from openhpo.api.schemas import CreationResponse, DeleteAllResponse, SkippedTask, TaskStatus
from openhpo.api.uploads import MemberCache, SubmitRequest, check_entry_script, read_submit
from openhpo.status import task_status
from openhpo.submission import check_algorithm, generate_name, stored_definition
from workers.code import check_archive
from workers.runner import result_zip_key

log = structlog.get_logger("openhpo.api")

#: Base path of every WMLA route.
API_PREFIX = "/platform/rest/deeplearning/v1"
#: Names generated for one submit before a collision with existing tasks is reported.
GENERATED_NAME_ATTEMPTS = 5
#: Task names that a route of /hypersearch uses as a path segment.
RESERVED_NAMES = frozenset({"algorithm"})

router = APIRouter(prefix="/hypersearch", tags=["hypersearch"])
_members = MemberCache()

_SUBMIT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {"$ref": "#/components/schemas/SubmitForm"}},
            "application/json": {"schema": {"$ref": "#/components/schemas/TaskDefinition"}},
            "application/x-www-form-urlencoded": {"schema": {
                "type": "object", "required": ["data"], "properties": {"data": {"type": "string"}}}},
        },
    },
}

TaskName = Annotated[str, Path(description="the task's hpoName", examples=["Admin-hpo-1"])]
ClassicQuery = Annotated[bool | None, Query(description="respond as classic WMLA servers did (a bare JSON string "
                                                        "from a submit, 204 from delete-all); the server default "
                                                        "is OPENHPO_API_CLASSIC_RESPONSES")]


def parse_spec(body: dict[str, Any]) -> TaskSpec:
    """Validate a task definition.

    Raises:
        SpecError: the definition is invalid, naming the field.
    """
    try:
        return TaskSpec.parse(body)
    except SpecError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError) as exc:
        # NOTE: the parser should name the field itself; this keeps an unforeseen input a 400 and logs the case.
        log.warning("task definition parser raised an unexpected error", error=repr(exc), exc_info=True)
        raise SpecError("(body)", f"cannot be parsed ({type(exc).__name__}: {exc})",
                        fix="check the field types against the TaskDefinition schema at /openapi.json") from None


def create_task(store: RedisStore, request: SubmitRequest, creator: str) -> tuple[str, str | None]:
    """Validate a submit request, store its code and create the task; returns the name and the code hash.

    Raises:
        SpecError: invalid definition or algorithm settings, missing or unknown code, or a script not in the
            archive.
        TaskExistsError: ``hpoName`` is taken.
    """
    spec = parse_spec(request.body)
    check_algorithm(spec)
    digest: str | None = None
    members: list[tarfile.TarInfo] | None = None
    if request.code is not None:
        members = request.code.members
    elif request.code_hash is not None:
        digest = request.code_hash
        members = _members.get(digest)
        if members is None:
            archive = store.get_code(digest)
            if archive is None:
                raise SpecError("codeHash", "names no stored code archive", digest,
                                "upload the model code with POST /code first and use the codeHash it returns")
            members = check_archive(archive, len(archive), len(archive) + 1)
            _members.put(digest, members)
    if spec.model.main and members is None:
        raise SpecError("file", "is missing: --model-main names a script but no code was sent",
                        fix="send the model directory as a tar.gz in the file part, or a JSON body with the "
                            "codeHash that POST /code returned")
    if members is not None:
        check_entry_script(spec, members)

    if spec.name is not None:
        check_name(spec.name)
        if spec.name in RESERVED_NAMES:
            raise SpecError("hpoName", "is reserved for a route of the API", spec.name, "choose another name")
    if request.code is not None:
        digest = store.put_code(request.code.archive)
        _members.put(digest, members or [])
    for attempt in range(1, GENERATED_NAME_ATTEMPTS + 1):
        name = spec.name or generate_name(creator)
        stored = stored_definition(spec, request.body)
        stored["hpoName"] = name
        try:
            store.create_task(name, stored, creator, digest)
            return name, digest
        except TaskExistsError:
            # A generated name has a millisecond clock and three random digits, so concurrent submits may collide.
            if spec.name is not None or attempt == GENERATED_NAME_ATTEMPTS:
                raise
    raise AssertionError("unreachable: the last attempt returns or raises")


def _classic(classic: bool | None, default: bool) -> bool:
    return default if classic is None else classic


def _task_href(request: Request, name: str) -> str:
    return f"{request.scope.get('root_path', '')}{API_PREFIX}/hypersearch/{name}"


@router.post(
    "",
    summary="Submit a task",
    description="Submit a task as WMLA clients do, multipart/form-data with the parts `file` (a tar or tar.gz of "
                "the model directory, or one .py script) and `data` (the task definition as a JSON string); or as "
                "an application/json body that contains the task definition and the `codeHash` of code uploaded "
                "with `POST /code`. A form without code may also be sent url-encoded. Returns `{uid, href, "
                "hpoName}`, or with `?classic=true` the bare name.",
    response_model=CreationResponse,
    responses={200: {"content": {"application/json": {"schema": {
        "anyOf": [{"$ref": "#/components/schemas/CreationResponse"}, {"type": "string"}]}}}},
        **error_responses(400, 401, 403, 409, 413, 415)},
    openapi_extra=_SUBMIT_BODY,
)
async def submit_task(request: Request, store: StoreDep, settings: SettingsDep, caller: CallerDep,
                      classic: ClassicQuery = None) -> Response:
    submit_request = await read_submit(request, settings)
    name, digest = await run_in_threadpool(create_task, store, submit_request, caller.name)
    log.info("task submitted", task=name, creator=caller.name, code=digest)
    if _classic(classic, settings.api_classic_responses):
        return JSONResponse(name)
    return JSONResponse(CreationResponse(uid=name, href=_task_href(request, name), hpoName=name,
                                         codeHash=digest).model_dump(exclude_none=True))


def _visible_tasks(store: RedisStore, caller: Caller) -> list[str]:
    names = store.list_tasks()
    if caller.admin:
        return names
    with store.redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hget(store.task_key(name), "creator")
        creators = pipe.execute()
    return [name for name, creator in zip(names, creators) if creator and creator.decode() == caller.name]


@router.get("", summary="List tasks", response_model=list[TaskStatus], response_model_exclude_none=True,
            responses=error_responses(400, 401, 403))
def list_tasks(store: StoreDep, caller: CallerDep,
               state: Annotated[TaskState | None, Query(description="only tasks in this state")] = None
               ) -> list[dict[str, Any]]:
    """List every task the caller may see (all of them for the administrator token), oldest first."""
    statuses = []
    for name in _visible_tasks(store, caller):
        try:
            status = task_status(store, name)
        except KeyError:  # deleted between listing and reading
            continue
        if state is None or status["state"] == state.value:
            statuses.append(status)
    return statuses


@router.delete("", summary="Delete the caller's ended tasks", response_model=DeleteAllResponse,
               responses={204: {"description": "with ?classic=true"}, **error_responses(400, 401, 403)})
def delete_all_tasks(store: StoreDep, settings: SettingsDep, caller: CallerDep,
                     classic: ClassicQuery = None) -> Response:
    """Delete every ended task (FINISHED, FAILED, STOPPED) that the caller created.

    Tasks still SUBMITTED or RUNNING are left running and listed under ``skipped``: stop them first
    (``PUT /hypersearch/{name}``) to delete them too. The trial logs and result archives of a deleted task go
    with it.
    """
    deleted: list[str] = []
    skipped: list[SkippedTask] = []
    for name in store.list_tasks():
        try:
            task = store.get_task(name)
        except KeyError:
            continue
        if task.creator != caller.name:
            continue
        if not task.state.ended:
            skipped.append(SkippedTask(hpoName=name, state=task.state, reason="the task has not ended; stop it "
                                       "first with PUT /hypersearch/" + name))
            continue
        try:
            _delete(store, name, task.next_trial)
        except (KeyError, StateConflictError) as exc:  # deleted or restarted meanwhile
            skipped.append(SkippedTask(hpoName=name, state=task.state, reason=str(exc)))
            continue
        deleted.append(name)
    log.info("tasks deleted", creator=caller.name, deleted=len(deleted), skipped=len(skipped))
    if _classic(classic, settings.api_classic_responses):
        return Response(status_code=204)
    return JSONResponse(DeleteAllResponse(deleted=deleted, skipped=skipped).model_dump(mode="json"))


@router.get("/{name}", summary="Get a task's status", response_model=TaskStatus, response_model_exclude_none=True,
            responses=error_responses(400, 401, 403, 404))
def get_task(name: TaskName, store: StoreDep, caller: CallerDep) -> dict[str, Any]:
    """WMLA's task-state object: state, counts, progress, every experiment and the best one."""
    task = store.get_task(name)
    caller.check_owner(task)
    return task_status(store, name, task)


@router.put("/{name}", summary="Stop a task", status_code=204,
            responses={400: {"description": "the task has ended: the plain-text body `Error 400: Model tuning "
                                            "<name> is already stopped.`",
                             "content": {"text/plain": {"schema": {"type": "string"}}}},
                       **error_responses(401, 403, 404)})
def stop_task(name: TaskName, store: StoreDep, caller: CallerDep) -> Response:
    """Stop gracefully: no new trials start and running ones are stopped; the task ends STOPPED when they have."""
    return _stop(store, caller, name, force=False)


@router.put("/{name}/force", summary="Force-stop a task", status_code=204,
            responses={400: {"description": "the task has ended (plain text, as for a stop)",
                             "content": {"text/plain": {"schema": {"type": "string"}}}},
                       **error_responses(401, 403, 404)})
def force_stop_task(name: TaskName, store: StoreDep, caller: CallerDep) -> Response:
    """Stop at once: the task ends STOPPED on the coordinator's next pass while its trial processes are killed."""
    return _stop(store, caller, name, force=True)


def _stop(store: RedisStore, caller: Caller, name: str, force: bool) -> Response:
    task = store.get_task(name)
    caller.check_owner(task)
    try:
        store.request_stop(name, force=force)
    except StateConflictError:
        return already_stopped(name)
    log.info("task stop requested", task=name, force=force, by=caller.name)
    return Response(status_code=204)


@router.put("/{name}/restart", summary="Restart a stopped or failed task", response_model=TaskStatus,
            response_model_exclude_none=True, responses=error_responses(400, 401, 403, 404, 409))
def restart_task(name: TaskName, store: StoreDep, caller: CallerDep) -> dict[str, Any]:
    """Put a STOPPED or FAILED task back in the queue; its ended trials are kept and count toward maxJobNum."""
    task = store.get_task(name)
    caller.check_owner(task)
    store.restart_task(name)
    log.info("task restarted", task=name, by=caller.name)
    return task_status(store, name)


@router.delete("/{name}", summary="Delete a task", status_code=204, responses=error_responses(400, 401, 403, 404, 409))
def delete_task(name: TaskName, store: StoreDep, caller: CallerDep) -> Response:
    """Delete an ended task with its trials, logs and result archives; a running task gets 409."""
    task = store.get_task(name)
    caller.check_owner(task)
    _delete(store, name, task.next_trial)
    log.info("task deleted", task=name, by=caller.name)
    return Response(status_code=204)


def _delete(store: RedisStore, name: str, trial_count: int) -> None:
    store.delete_task(name)
    keys = [result_zip_key(store, name, trial_id) for trial_id in range(trial_count)]
    if keys:
        store.redis.delete(*keys)
