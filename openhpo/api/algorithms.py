"""Routes of search algorithms: ``/hypersearch/algorithm``, built-in ones and installed plugins.

Plugins live in the plugin directory (``OPENHPO_PLUGIN_DIR``) that the coordinator reads, so the API and the
coordinator must share it (one host, or a shared volume). Their WMLA metadata (creator, install time, remoteExec,
logLevel, conda settings) is kept in Redis under ``<prefix>:plugin:<name>``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from broker.store import RedisStore
from hpo_core.errors import SpecError
from openhpo.api.deps import CallerDep, SettingsDep, StoreDep
from openhpo.api.errors import ApiError, ForbiddenError, NotFoundError, NotImplementedYetError
from openhpo.api.responses import error_responses
from openhpo.api.schemas import AlgorithmDesc
from openhpo.api.uploads import parse_json, pick_upload, read_code, read_form
from workers.code import extract_archive

log = structlog.get_logger("openhpo.api")

router = APIRouter(prefix="/hypersearch/algorithm", tags=["algorithms"])

#: Names that GET /hypersearch/algorithm reports for the built-in searchers (WMLA reports Tpe as TPE).
_REPORTED_NAMES = {"Tpe": "TPE"}

_INSTALL_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "required": ["data"],
            "properties": {
                "data": {"type": "string", "description": "JSON string: name (required), path (a directory on the "
                                                          "server, when no file is sent), remoteExec, logLevel, "
                                                          "condaHome, condaEnv"},
                "file": {"type": "string", "format": "binary",
                         "description": "a tar of the plugin directory, optimizer.py at its top"},
            },
        }}},
    },
}


class AlgorithmExistsError(ApiError):
    status = 409
    code = "algorithm_exists"


def _plugins_module():
    try:
        from hpo_core.algorithms import plugin
    except ImportError:
        return None
    return plugin


def _require_plugins():
    plugin = _plugins_module()
    if plugin is None:
        # NOTE: only reached in an installation without hpo_core.algorithms.plugin.
        raise NotImplementedYetError("search-algorithm plugins are not available in this installation; use a "
                                     "built-in algorithm")
    return plugin


def _builtin() -> list[dict[str, Any]]:
    from hpo_core.algorithms import BUILTIN_SEARCHERS

    return [{"name": _REPORTED_NAMES.get(name, name), "type": "BUILD_IN", "remoteExec": False}
            for name in BUILTIN_SEARCHERS]


def _metadata_key(store: RedisStore, name: str) -> str:
    return f"{store.prefix}:plugin:{name}"


def _plugin_desc(store: RedisStore, info) -> dict[str, Any]:
    raw = store.redis.get(_metadata_key(store, info.name))
    meta = json.loads(raw) if raw else {}
    desc = {"name": info.name, "type": "USER_PLUGIN", "remoteExec": bool(meta.get("remoteExec", False)),
            "path": info.location if info.kind == "directory" else None}
    for field in ("condaHome", "condaEnv", "creator", "createtime", "logLevel"):
        if meta.get(field) is not None:
            desc[field] = meta[field]
    return desc


@router.get("", summary="List search algorithms", response_model=list[AlgorithmDesc],
            response_model_exclude_none=True, responses=error_responses(400, 401))
def list_algorithms(store: StoreDep, _caller: CallerDep,
                    type: Annotated[Literal["BUILD_IN", "USER_PLUGIN"] | None,  # noqa: A002 - WMLA's parameter
                                    Query(description="only built-in algorithms or only plugins")] = None
                    ) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if type in (None, "BUILD_IN"):
        found += _builtin()
    plugin = _plugins_module()
    if type in (None, "USER_PLUGIN") and plugin is not None:
        found += [_plugin_desc(store, info) for info in plugin.list_plugins()]
    return found


@router.get("/{name}", summary="Get a search algorithm", response_model=AlgorithmDesc,
            response_model_exclude_none=True, responses=error_responses(400, 401, 404))
def get_algorithm(name: str, store: StoreDep, _caller: CallerDep) -> dict[str, Any]:
    for entry in _builtin():
        if entry["name"].lower() == name.lower():
            return entry
    plugin = _plugins_module()
    info = plugin.find_plugin(name) if plugin is not None else None
    if info is None:
        raise NotFoundError(f"no algorithm named {name!r}; GET /hypersearch/algorithm lists them")
    return _plugin_desc(store, info)


async def _install(request: Request, store: RedisStore, settings, creator: str) -> dict[str, Any]:
    plugin = _require_plugins()
    form = await read_form(request, settings)
    data = form.get("data")
    if not isinstance(data, str):
        raise SpecError("data", "is missing from the form", fix='send data=json.dumps({"name": "my_search"})')
    body = parse_json(data, "data")
    if not isinstance(body, dict):
        raise SpecError("data", "must be a JSON object with name", type(body).__name__, 'send {"name": "my_search"}')
    name = plugin.check_plugin_name(body.get("name"))
    if name.lower() in {entry["name"].lower() for entry in _builtin()}:
        raise SpecError("name", "is the name of a built-in algorithm", name, "choose another name")
    if plugin.find_plugin(name) is not None:
        raise AlgorithmExistsError(f"an algorithm named {name!r} is installed already; delete it first with "
                                   f"DELETE /hypersearch/algorithm/{name}")
    upload = pick_upload(form)
    staging = Path(tempfile.mkdtemp(prefix="openhpo-plugin-"))
    try:
        if upload is not None:
            code = read_code(upload.filename, await upload.read(), settings, script_dir="plugin")
            await run_in_threadpool(extract_archive, code.archive, staging / "src", settings.max_archive_bytes,
                                    settings.max_archive_files)
            source = _plugin_root(staging / "src")
        elif isinstance(body.get("path"), str) and body["path"]:
            source = Path(body["path"])
            if not source.is_dir():
                raise SpecError("path", "is not a directory on the server", body["path"],
                                "send the plugin as a tar in the file part, or give a directory the server can read")
        else:
            raise SpecError("file", "is missing, and data has no path", fix="send a tar of the plugin directory "
                            "(optimizer.py at its top) in the file part")
        info = await run_in_threadpool(plugin.install_plugin, source, name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    meta = {"creator": creator, "createtime": time.strftime("%Y-%m-%d %H:%M:%S"),
            "remoteExec": bool(body.get("remoteExec", False)), "logLevel": body.get("logLevel", "INFO"),
            "condaHome": body.get("condaHome"), "condaEnv": body.get("condaEnv")}
    store.redis.set(_metadata_key(store, name), json.dumps(meta))
    log.info("plugin installed", plugin=name, creator=creator, path=info.location)
    return _plugin_desc(store, info)


def _plugin_root(extracted: Path) -> Path:
    """Find the directory that contains optimizer.py: the archive's root, or its single top directory."""
    if (extracted / "optimizer.py").is_file():
        return extracted
    entries = [p for p in extracted.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and (entries[0] / "optimizer.py").is_file():
        return entries[0]
    raise SpecError("file", "holds no optimizer.py at its top or in its single directory",
                    fix="tar the plugin directory so that optimizer.py is at the archive's top")


_INSTALL_DOC = dict(summary="Install a plugin algorithm", response_model=AlgorithmDesc,
                    response_model_exclude_none=True, openapi_extra=_INSTALL_BODY,
                    responses=error_responses(400, 401, 403, 409, 413, 501))


@router.post("/install", **_INSTALL_DOC)
async def install_algorithm(request: Request, store: StoreDep, settings: SettingsDep,
                            caller: CallerDep) -> dict[str, Any]:
    """Install a WMLA ``optimizer.py`` plugin under the name in ``data``; it must import and define
    ``PluginOptimizer``. Only the administrator token may install, because a plugin runs on the coordinator."""
    if not caller.admin:
        raise ForbiddenError("only the administrator token may install algorithms, because a plugin runs inside "
                             "the coordinator's host")
    return await _install(request, store, settings, caller.name)


@router.post("", include_in_schema=False)
async def install_algorithm_alias(request: Request, store: StoreDep, settings: SettingsDep,
                                  caller: CallerDep) -> dict[str, Any]:
    """Install a plugin at the path that one copy of WMLA's specification names."""
    return await install_algorithm(request, store, settings, caller)


@router.delete("/{name}", summary="Delete a plugin algorithm", status_code=204,
               responses=error_responses(400, 401, 403, 404, 501))
def delete_algorithm(name: str, store: StoreDep, caller: CallerDep) -> Response:
    if not caller.admin:
        raise ForbiddenError("only the administrator token may delete algorithms")
    if name.lower() in {entry["name"].lower() for entry in _builtin()}:
        raise SpecError("name", "is a built-in algorithm, which cannot be deleted", name, "name a plugin")
    plugin = _require_plugins()
    info = plugin.find_plugin(name)
    if info is None:
        raise NotFoundError(f"no plugin named {name!r}; GET /hypersearch/algorithm?type=USER_PLUGIN lists them")
    plugin.delete_plugin(info.name)
    store.redis.delete(_metadata_key(store, info.name))
    log.info("plugin deleted", plugin=info.name, by=caller.name)
    return Response(status_code=204)
