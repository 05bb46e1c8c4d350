"""Reading submit requests: the multipart form, JSON bodies, code archives and single scripts.

An uploaded archive is checked before it is stored: its size and entry count, and that it has no absolute paths,
no ``..``, no links that point outside it and no devices. The script that ``--model-main`` names must be in it, so
a wrong upload fails at submit time with a 400 and not later in every trial.
"""

from __future__ import annotations

import io
import json
import posixpath
import re
import tarfile
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from hpo_core.errors import SpecError
from hpo_core.spec import ModelSpec, TaskSpec
from openhpo.api.errors import PayloadTooLargeError, UnsupportedMediaError
from openhpo.api.settings import ApiSettings
from workers.code import ArchiveError, check_archive

#: Room left beside the code archive in a multipart request for the form's other parts and its boundaries.
FORM_OVERHEAD_BYTES = 8 * 1024 * 1024
#: A single uploaded script must have a plain file name, because it becomes a path in the archive.
SCRIPT_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\.py$")
#: Directory a single script is put in when the task names no --model-dir.
DEFAULT_SCRIPT_DIR = "model"


@dataclass
class CodeUpload:
    """A checked code archive, ready to store."""

    archive: bytes
    members: list[tarfile.TarInfo]


@dataclass
class SubmitRequest:
    """A decoded submit request: the task definition and either uploaded code or the hash of stored code."""

    body: dict[str, Any]
    code: CodeUpload | None
    code_hash: str | None


def _check_length(request: Request, limit: int) -> None:
    """Reject a request whose declared length is over ``limit`` before reading its body."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"request body is {int(declared)} bytes, over the limit of {limit}; "
                                   "upload a smaller archive (leave data sets out of the model directory)")


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: str | bytes, field: str) -> Any:
    """Decode JSON strictly (no NaN or Infinity).

    Raises:
        SpecError: naming ``field``, the position of the syntax error and the fix.
    """
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise SpecError(field, f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                        fix="send the task definition as a JSON object, e.g. json.dumps(body)") from None
    except ValueError as exc:  # NaN or Infinity, or bytes that are not UTF-8
        raise SpecError(field, f"is not valid JSON: {exc}", fix="send finite numbers and UTF-8 text") from None


def wrap_script(filename: str, data: bytes, directory: str) -> bytes:
    """Build a tar.gz that contains one script as ``<directory>/<filename>``, a one-file model directory."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        folder = tarfile.TarInfo(directory)
        folder.type = tarfile.DIRTYPE
        folder.mode = 0o755
        folder.mtime = int(time.time())
        archive.addfile(folder)
        info = tarfile.TarInfo(f"{directory}/{filename}")
        info.size = len(data)
        info.mode = 0o644
        info.mtime = folder.mtime
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def read_code(filename: str | None, data: bytes, settings: ApiSettings, script_dir: str | None) -> CodeUpload:
    """Check an uploaded archive, or wrap a single ``.py`` script into one.

    Raises:
        PayloadTooLargeError: over ``max_archive_bytes``.
        ArchiveError: unreadable or unsafe archive, or a script with an unusable name.
    """
    if len(data) > settings.max_archive_bytes:
        raise PayloadTooLargeError(f"code upload is {len(data)} bytes, over the limit of "
                                   f"{settings.max_archive_bytes} (OPENHPO_MAX_ARCHIVE_BYTES); leave data sets "
                                   "and checkpoints out of the model directory")
    base = posixpath.basename((filename or "").replace("\\", "/"))
    if base.endswith(".py"):
        if not SCRIPT_NAME_PATTERN.match(base):
            raise ArchiveError(f"script name {base!r} is not a plain file name",
                               fix="name the script with letters, digits, '_', '.' or '-', e.g. train.py")
        directory = script_dir or DEFAULT_SCRIPT_DIR
        data = wrap_script(base, data, directory)
    members = check_archive(data, settings.max_archive_bytes, settings.max_archive_files)
    return CodeUpload(data, members)


def _normalise(name: str) -> str:
    name = posixpath.normpath(name)
    return "" if name == "." else name


def check_entry_script(spec: TaskSpec, members: list[tarfile.TarInfo]) -> None:
    """Check that ``--model-main`` names a file of the archive, resolving the model directory as workers do.

    Workers run the script from ``--model-dir`` inside the archive, or from the archive's single top-level
    directory, or from the archive's root (see ``workers.code.model_root``).

    Raises:
        SpecError: on ``modelSpec.args``, listing what the archive contains at its top.
    """
    main = spec.model.main
    if not main:
        return
    files = {_normalise(m.name) for m in members if m.isfile() or m.issym() or m.islnk()}
    directories = {_normalise(m.name) for m in members if m.isdir()}
    for name in files | directories:
        parent = posixpath.dirname(name)
        while parent:
            directories.add(parent)
            parent = posixpath.dirname(parent)
    if spec.model.model_dir:
        root = _normalise(spec.model.model_dir)
        if root and root not in directories:
            raise SpecError("modelSpec.args", f"--model-dir {spec.model.model_dir!r} is not a directory of the "
                            "uploaded archive", spec.model.model_dir,
                            f"name one of the archive's directories: {sorted(directories)[:10]}")
    else:
        tops = {name.split("/")[0] for name in files | directories if name and not name.startswith(".")}
        root = next(iter(tops)) if len(tops) == 1 and next(iter(tops)) in directories else ""
    path = _normalise(posixpath.join(root, main))
    if path not in files:
        top = sorted({name.split("/")[0] for name in files | directories if name})[:10]
        raise SpecError("modelSpec.args", f"--model-main {main!r} is not a file of the uploaded archive (looked for "
                        f"{path!r}; the archive's top level contains {top})", main,
                        "name the script relative to the model directory, or upload the directory that holds it")


async def read_submit(request: Request, settings: ApiSettings) -> SubmitRequest:
    """Decode a submit request, multipart (WMLA) or JSON (with ``codeHash``).

    Raises:
        SpecError: malformed JSON or form, naming the field.
        PayloadTooLargeError: a body over the configured limits.
        UnsupportedMediaError: neither multipart nor JSON.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return await _read_submit_form(request, settings)
    if content_type == "application/json" or content_type.endswith("+json"):
        _check_length(request, settings.max_json_body_bytes)
        raw = await request.body()
        if len(raw) > settings.max_json_body_bytes:
            raise PayloadTooLargeError(f"JSON body is {len(raw)} bytes, over the limit of "
                                       f"{settings.max_json_body_bytes}")
        body = parse_json(raw, "(body)")
        if not isinstance(body, dict):
            raise SpecError("(body)", "must be a JSON object with modelSpec, algoDef and hyperParams",
                            type(body).__name__, "send the task definition as a JSON object")
        code_hash = body.pop("codeHash", None)
        if code_hash is not None and (not isinstance(code_hash, str) or not re.fullmatch(r"[0-9a-f]{64}", code_hash)):
            raise SpecError("codeHash", "must be the 64-digit hex SHA-256 that POST /code returned", code_hash,
                            "upload the code with POST /code and copy its codeHash")
        return SubmitRequest(body, None, code_hash)
    raise UnsupportedMediaError(f"content type {content_type or '(none)'!r} is not accepted; send multipart/form-data "
                                "with the parts file and data (as WMLA clients do), or application/json with a "
                                "codeHash")


async def read_form(request: Request, settings: ApiSettings):
    """Parse a multipart form within the archive limit.

    Raises:
        PayloadTooLargeError: the declared body is over the limit.
        SpecError: the form cannot be parsed.
    """
    _check_length(request, settings.max_archive_bytes + FORM_OVERHEAD_BYTES)
    try:
        return await request.form(max_files=4, max_fields=16, max_part_size=settings.max_json_body_bytes)
    except MultiPartException as exc:
        raise SpecError("(form)", f"the multipart form cannot be read ({exc.message})",
                        fix="send multipart/form-data with a file part and a data part") from None


def pick_upload(form) -> UploadFile | None:
    """Return the code part: ``file``, else the only file part besides ``data`` (the CPD notebook names the part
    after the script)."""
    upload = form.get("file")
    if isinstance(upload, UploadFile):
        return upload
    if isinstance(upload, str) and upload:
        raise SpecError("file", "must be a file part, not a text field", upload[:80],
                        "send the archive as a file, e.g. files={'file': open(path, 'rb')}")
    uploads = [value for key, value in form.multi_items() if isinstance(value, UploadFile) and key != "data"]
    if len(uploads) > 1:
        raise SpecError("file", f"the form contains {len(uploads)} file parts", fix="send one file part named file")
    return uploads[0] if uploads else None


async def _read_submit_form(request: Request, settings: ApiSettings) -> SubmitRequest:
    form = await read_form(request, settings)
    data = form.get("data")
    if data is None:
        raise SpecError("data", "is missing from the form", fix="send the task definition as a form field named "
                        "data holding a JSON string")
    if isinstance(data, UploadFile):  # some clients send every part as a file
        data = (await data.read()).decode("utf-8", errors="replace")
    body = parse_json(data, "data")
    if not isinstance(body, dict):
        raise SpecError("data", "must be a JSON object with modelSpec, algoDef and hyperParams",
                        type(body).__name__, "send json.dumps of the task definition")
    code_hash = body.pop("codeHash", None)
    upload = pick_upload(form)
    code = None
    if upload is not None:
        content = await upload.read()
        script_dir = _model_dir_of(body) if (upload.filename or "").endswith(".py") else None
        code = read_code(upload.filename, content, settings, script_dir)
        code_hash = None
    return SubmitRequest(body, code, code_hash if isinstance(code_hash, str) else None)


def _model_dir_of(body: dict[str, Any]) -> str | None:
    """``--model-dir`` of a not yet validated body, to name the directory a single script goes in."""
    try:
        model_dir = ModelSpec.parse(body.get("modelSpec")).model_dir
    except (SpecError, TypeError, ValueError, AttributeError):  # the full parse in the route reports it
        return None
    if model_dir and re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", model_dir):
        return model_dir
    return None


class MemberCache:
    """Member lists of stored archives by hash, so a JSON submit that names known code reads no archive."""

    def __init__(self, size: int = 256):
        self.size = size
        self._members: OrderedDict[str, list[tarfile.TarInfo]] = OrderedDict()

    def get(self, digest: str) -> list[tarfile.TarInfo] | None:
        members = self._members.get(digest)
        if members is not None:
            self._members.move_to_end(digest)
        return members

    def put(self, digest: str, members: list[tarfile.TarInfo]) -> None:
        self._members[digest] = members
        self._members.move_to_end(digest)
        while len(self._members) > self.size:
            self._members.popitem(last=False)
