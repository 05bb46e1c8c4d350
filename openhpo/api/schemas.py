"""Request and response schemas of the REST API, in WMLA's field names.

The request models document the task definition in the OpenAPI schema. Validation itself is
:meth:`hpo_core.spec.TaskSpec.parse`, which is lenient where WMLA clients vary (numbers sent as strings, enum case)
and names the JSON path of every rejected field. The models below therefore accept those variants too.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hpo_core.records import TaskState

Number = float | int | str


class _Open(BaseModel):
    """A model that keeps fields it does not declare, as WMLA clients send and expect extra keys."""

    model_config = ConfigDict(extra="allow")


# --- requests -------------------------------------------------------------------------------------------------------


class ModelSpecIn(_Open):
    """How to launch one trial."""

    args: str = Field("", description="dlicmd.py-style launch flags, e.g. `--exec-start PyTorch --model-main "
                                      "train.py --epochs 3`; flags openhpo does not use pass through to the script")
    sigName: str | None = Field(None, description="WMLA instance group; recorded, not used")
    command: str | list[str] | None = Field(None, description="openhpo extension: a plain command line run in "
                                                              "the model directory instead of --model-main")


class AlgoParamIn(_Open):
    name: str
    value: Number | bool


class AlgoDefIn(_Open):
    """The search algorithm and its limits."""

    algorithm: str = Field(..., description="Random, Tpe, Hyperband, ASHA, BOHB, ExperimentGridSearch or an "
                                            "installed plugin's name; case-insensitive")
    objectiveMetric: str = Field(..., description="a key of the entries of val_dict_list.json")
    objective: str = Field("minimize", description="minimize or maximize")
    maxJobNum: int | str = Field(-1, description="trials in total; -1 for no limit")
    maxParalleJobNum: int | str = Field(1, description="trials at once (WMLA's spelling)")
    maxRunTime: int | str = Field(-1, description="minutes of wall-clock time; -1 for no limit")
    algoParams: list[AlgoParamIn] | dict[str, Any] | None = None
    hyperbandEta: Number | None = None
    additionalMetrics: dict[str, str] | None = None


class HyperParamIn(_Open):
    """One parameter of the search space."""

    name: str
    type: str = Field(..., description="Range or Discrete")
    dataType: str = Field(..., description="DOUBLE, INT or STR")
    minDbVal: Number | None = None
    maxDbVal: Number | None = None
    minIntVal: Number | None = None
    maxIntVal: Number | None = None
    discreteDbVal: list[Number] | None = None
    discreteIntVal: list[Number] | None = None
    discreateStrVal: list[str] | None = Field(None, description="WMLA's spelling; discreteStrVal is accepted too")
    step: Number | None = None
    power: Number | None = None


class FixedValueIn(_Open):
    name: str
    dataType: str = "STR"
    fixedVal: Number | bool


class ExperimentIn(_Open):
    id: int | None = None
    hyperParams: list[FixedValueIn]


class TaskDefinition(_Open):
    """A WMLA submit body. In a JSON request it may also name code uploaded before with ``codeHash``."""

    hpoName: str | None = Field(None, description="task name; generated as <user>-hpo-<digits> when absent")
    modelSpec: ModelSpecIn
    algoDef: AlgoDefIn
    hyperParams: list[HyperParamIn] | None = Field(None, description="the search space (every algorithm but "
                                                                     "ExperimentGridSearch)")
    experiments: list[ExperimentIn] | None = Field(None, description="fixed trials for ExperimentGridSearch")
    codeHash: str | None = Field(None, description="openhpo extension, JSON requests only: the hash that "
                                                   "POST /code returned for the model code")


class SubmitForm(BaseModel):
    """The multipart form of ``POST /hypersearch``, as WMLA clients send it."""

    data: str = Field(..., description="the task definition (see TaskDefinition) as a JSON string")
    file: bytes | None = Field(None, description="the model code: a tar or tar.gz of the model directory "
                                                 "(WMLA names it <dir>.modelDir.tar), or one .py script",
                               json_schema_extra={"format": "binary"})


class CodeForm(BaseModel):
    """The multipart form of ``POST /code``."""

    file: bytes = Field(..., description="a tar or tar.gz of the model directory, or one .py script",
                        json_schema_extra={"format": "binary"})
    modelDir: str | None = Field(None, description="for a single script: the directory name to put it in, as "
                                                   "--model-dir will name it (default: model)")


# --- responses ------------------------------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    """Every error response except the plain-text WMLA one for stopping an ended task."""

    code: str = Field(..., description="stable machine-readable code, e.g. invalid_spec, task_not_found")
    message: str
    field: str | None = Field(None, description="JSON path of the rejected field, e.g. hyperParams[2].maxDbVal")
    fix: str | None = Field(None, description="what to change")


class CreationResponse(BaseModel):
    """The response to a submit (the bare ``hpoName`` string instead with ``?classic=true``)."""

    uid: str
    href: str
    hpoName: str
    codeHash: str | None = None


class CodeUploadResponse(BaseModel):
    codeHash: str = Field(..., description="SHA-256 of the stored archive; put it in a JSON submit body")
    size: int = Field(..., description="archive size in bytes")
    files: int = Field(..., description="entries in the archive")


class HyperParamValue(_Open):
    name: str
    dataType: str
    fixedVal: str
    userDefined: bool = False


class Experiment(_Open):
    """One trial, in WMLA's experiment shape with openhpo's extra fields."""

    id: int
    state: str
    metricVal: float = Field(..., description="the objective value; 9999.99 while running and for failed trials")
    maxiteration: int = 0
    appId: str = Field(..., description="exec id for /execs/{appId}: <hpoName>-<id>")
    hyperParams: list[HyperParamValue]
    values: dict[str, Any] = Field(..., description="the hyperparameters with their types")
    attempt: int
    metrics: dict[str, Any] = Field(default_factory=dict)
    startTime: str | None = None
    endTime: str | None = None
    duration: float | None = Field(None, description="seconds")
    reason: str | None = None
    exitCode: int | None = None
    worker: str | None = None
    meta: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None
    steps: int = Field(0, description="entries of val_dict_list.json reported so far, also while the trial runs")
    latestMetricVal: float | None = Field(None, description="the objective in the latest reported entry")


class TaskStatus(_Open):
    """WMLA's task-state object."""

    hpoName: str
    state: TaskState
    running: int
    queued: int
    complete: int = Field(..., description="ended experiments, failed ones included")
    failed: int
    progress: str = Field(..., description='"<complete>/<maxJobNum>", or "<complete>/-" without a limit')
    createtime: str | None
    creator: str
    duration: str = Field(..., description="HH:MM:SS")
    experiments: list[Experiment]
    algoDef: dict[str, Any]
    hyperParams: list[Any] | None = None
    reason: str | None = None
    best: Experiment | None = Field(None, description="absent until an experiment has a value")


class SkippedTask(BaseModel):
    hpoName: str
    state: TaskState
    reason: str


class DeleteAllResponse(BaseModel):
    """The result of ``DELETE /hypersearch``: ended tasks are deleted, running ones are left running and listed."""

    deleted: list[str]
    skipped: list[SkippedTask]


class ExecInfo(_Open):
    """One trial as a WMLA exec (``GET /execs/{appId}``)."""

    appId: str
    id: str
    state: Literal["WAITING", "RUNNING", "FINISHED", "FAILED", "STOPPED"] = Field(
        ..., description="WAITING while queued; the trial state otherwise")
    hpoName: str
    experimentId: int
    attempt: int
    args: str = Field(..., description="modelSpec.args of the task")
    sigId: str | None = None
    submissionId: str = Field(..., description="<appId>-attempt-<n>, the current attempt")
    userName: str
    hyperParams: dict[str, Any]
    metricVal: float
    startTime: str | None = None
    endTime: str | None = None
    reason: str | None = None
    exitCode: int | None = None
    worker: str | None = None
    resultDir: str | None = Field(None, description="RESULT_DIR of the current attempt, on the worker's host")


class AlgorithmDesc(_Open):
    """WMLA's HpoAlgorithmDesc."""

    name: str
    type: Literal["BUILD_IN", "USER_PLUGIN"]
    remoteExec: bool = False
    path: str | None = None
    condaHome: str | None = None
    condaEnv: str | None = None
    creator: str | None = None
    createtime: str | None = None
    logLevel: str | None = None


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    redis: str = Field(..., description='"ok", or the error that reaching Redis raised')
    version: str
