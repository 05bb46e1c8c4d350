"""compose.yaml, Dockerfile and .dockerignore: valid against the Compose Specification, and consistent with the code.

No container engine runs here. The file is checked against the compose-spec JSON schema that check-jsonschema
ships (``vendor.compose-spec``), before and after ``${VAR}`` interpolation, and every service's command is
parsed by the command line it calls.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from openhpo.cli import build_parser
from tests.conftest import REPO

COMPOSE = REPO / "compose.yaml"
ENV = {"OPENHPO_API_TOKEN": "a-token-of-twenty-chars", "OPENHPO_FLOWER_PASSWORD": "flower-secret",
       "OPENHPO_REDIS_PASSWORD": "redis-secret"}
_VARIABLE = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
                       r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


class InterpolationError(ValueError):
    """A required variable (``${VAR:?message}``) is unset."""


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Substitute variables in every string of ``value`` as Docker Compose does, for the forms this project uses."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        current = env.get(name)
        unset_or_empty = current is None or (current == "" and op is not None and op.startswith(":"))
        if op in ("-", ":-"):
            return arg if unset_or_empty else current
        if op in ("?", ":?"):
            if unset_or_empty:
                raise InterpolationError(f"{name}: {arg}")
            return current
        if op in ("+", ":+"):
            return "" if unset_or_empty else arg
        return current or ""

    return _VARIABLE.sub(substitute, value)


def load_compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    return interpolate(yaml.safe_load(COMPOSE.read_text()), ENV if env is None else env)


def test_compose_matches_compose_spec_schema():
    import importlib.resources

    from jsonschema import validators

    schema_file = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator = validators.validator_for(schema)(schema)
    for label, document in (("as written", yaml.safe_load(COMPOSE.read_text())), ("interpolated", load_compose())):
        errors = sorted(validator.iter_errors(document), key=lambda error: list(error.absolute_path))
        messages = [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in errors]
        assert messages == [], f"compose.yaml {label}"


def test_compose_requires_every_secret():
    for missing in ENV:
        with pytest.raises(InterpolationError, match=missing):
            load_compose({k: v for k, v in ENV.items() if k != missing})
        with pytest.raises(InterpolationError, match=missing):
            load_compose({**ENV, missing: ""})


def test_compose_services_have_no_fixed_names():
    services = load_compose()["services"]
    assert set(services) == {"redis", "api", "coordinator", "worker", "worker-cpu", "flower"}
    for name, service in services.items():
        assert "container_name" not in service, name


def test_compose_redis_persists_and_requires_password():
    compose = load_compose()
    redis_service = compose["services"]["redis"]
    command = redis_service["command"]
    password = command[command.index("--requirepass") + 1]
    assert password == "redis-secret"
    assert command[command.index("--appendonly") + 1] == "yes"
    assert "redis-data:/data" in redis_service["volumes"]
    assert "redis-data" in compose["volumes"]
    assert "redis-cli ping" in " ".join(redis_service["healthcheck"]["test"])
    assert redis_service["environment"]["REDISCLI_AUTH"] == password
    for name, service in compose["services"].items():
        if name == "redis":
            continue
        assert service["environment"]["OPENHPO_REDIS_URL"] == f"redis://:{password}@redis:6379/0", name
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", name


def test_compose_changed_password_reaches_every_service():
    services = load_compose({**ENV, "OPENHPO_REDIS_PASSWORD": "s3cret"})["services"]
    assert "s3cret" in services["redis"]["command"]
    assert services["worker"]["environment"]["OPENHPO_REDIS_URL"] == "redis://:s3cret@redis:6379/0"


def test_compose_ports_listen_on_loopback_by_default():
    services = load_compose()["services"]
    published = {name: service.get("ports", []) for name, service in services.items()}
    assert published["api"] == ["127.0.0.1:8000:8000"]
    assert published["flower"] == ["127.0.0.1:5555:5555"]
    assert published["redis"] == ["127.0.0.1:6379:6379"]
    assert published["worker"] == []
    assert published["coordinator"] == []


def test_compose_worker_reserves_gpus():
    worker = load_compose()["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    assert "deploy" not in load_compose()["services"]["worker-cpu"]
    assert load_compose()["services"]["worker-cpu"]["profiles"] == ["cpu"]


def test_compose_flower_uses_basic_auth():
    flower = load_compose()["services"]["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == "admin:flower-secret"
    from flower.options import options

    # Flower 2.2 fails to start on a FLOWER_* variable that is not one of its options (tornado spells them with '-').
    for variable in flower["environment"]:
        if variable.startswith("FLOWER_"):
            assert variable.removeprefix("FLOWER_").lower().replace("_", "-") in options._options, variable


def _commands() -> list[tuple[str, list[str]]]:
    commands = []
    for name, service in load_compose()["services"].items():
        command = service.get("command")
        if command is not None and name != "redis":
            commands.append((name, shlex.split(command) if isinstance(command, str) else list(command)))
    return commands


@pytest.mark.parametrize("service,command", _commands(), ids=[name for name, _ in _commands()])
def test_compose_command_exists(service: str, command: list[str]):
    if command[0] == "openhpo":
        scripts = {entry.name: entry.value for entry in importlib.metadata.entry_points(group="console_scripts")}
        assert scripts.get("openhpo") == "openhpo.cli:main"
        args = build_parser().parse_args(command[1:])
        assert callable(args.func)
        return
    assert command[:3] == ["celery", "-A", "workers.tasks"], service
    import workers.tasks

    assert workers.tasks.app.main == "openhpo"
    celery_commands = {entry.name for entry in importlib.metadata.entry_points(group="celery.commands")}
    assert command[3] in celery_commands


def test_dockerfile_builds_cpu_or_cuda_torch():
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^ARG TORCH_VARIANT=cpu$", text, re.MULTILINE)
    assert "cpu) pip install" in text
    assert "cuda) pip install" in text
    assert re.search(r"^USER openhpo$", text, re.MULTILINE)
    compose_variant = yaml.safe_load(COMPOSE.read_text())["x-openhpo"]["build"]["args"]["TORCH_VARIANT"]
    assert compose_variant == "${OPENHPO_TORCH_VARIANT:-cuda}"


def test_dockerignore_keeps_secrets_and_environments_out():
    ignored = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for pattern in (".env", ".git", ".venv", "tests"):
        assert pattern in ignored
    for needed in ("pyproject.toml", "README.md", "openhpo", "workers", "broker", "hpo_core"):
        assert needed not in ignored
        assert (REPO / needed).exists()
