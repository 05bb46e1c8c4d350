"""Route for uploading model code once and submitting JSON task definitions that refer to it."""

from __future__ import annotations

import re
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from hpo_core.errors import SpecError
from openhpo.api.deps import CallerDep, SettingsDep, StoreDep
from openhpo.api.responses import error_responses
from openhpo.api.schemas import CodeUploadResponse
from openhpo.api.uploads import pick_upload, read_code, read_form

log = structlog.get_logger("openhpo.api")

router = APIRouter(prefix="/code", tags=["code"])

_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"multipart/form-data": {
        "schema": {"$ref": "#/components/schemas/CodeForm"}}}},
}


@router.post("", summary="Upload model code", response_model=CodeUploadResponse,
             responses=error_responses(400, 401, 413), openapi_extra=_UPLOAD_BODY)
async def upload_code(request: Request, store: StoreDep, settings: SettingsDep, caller: CallerDep
                      ) -> CodeUploadResponse:
    """Store a code archive (a tar or tar.gz of the model directory, or one .py script) after the same checks
    as a submit, and return its hash. Put the hash in the ``codeHash`` field of a JSON ``POST /hypersearch``
    body to start any number of tasks on the same code without uploading it again."""
    form = await read_form(request, settings)
    upload = pick_upload(form)
    if upload is None:
        raise SpecError("file", "is missing from the form", fix="send the archive as a file part named file")
    model_dir = form.get("modelDir")
    if model_dir is not None and (not isinstance(model_dir, str)
                                  or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", model_dir)):
        raise SpecError("modelDir", "must be a plain directory name", str(model_dir)[:80],
                        "give the name that --model-dir uses, e.g. mnist")
    code = read_code(upload.filename, await upload.read(), settings, model_dir or None)
    digest = await run_in_threadpool(store.put_code, code.archive)
    log.info("code uploaded", code=digest, size=len(code.archive), by=caller.name)
    return CodeUploadResponse(codeHash=digest, size=len(code.archive), files=len(code.members))
