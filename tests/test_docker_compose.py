"""docker-compose.yml, checked without a Docker engine: valid against the Compose specification (the
``compose-spec`` parser, after interpolating defaults as `docker compose config` would) and wired
consistently with kbqa's own settings, ports and service names."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from compose_spec import PyCompose

from rag.config import PROJECT_ROOT, Settings

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
_VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(text: str, env: dict[str, str] | None = None) -> str:
    """``${VAR}`` / ``${VAR:-default}`` as Compose expands them, from ``env`` (empty: the defaults)."""
    env = env or {}
    return _VARIABLE.sub(lambda match: env.get(match.group(1)) or match.group(2) or "", text)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(interpolate(COMPOSE.read_text(encoding="utf-8")))


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_file_follows_the_compose_specification() -> None:
    text = interpolate(COMPOSE.read_text(encoding="utf-8"))
    parsed = PyCompose.from_yaml(text)
    parsed.validate()
    assert sorted(parsed.service_names()) == ["app", "chroma", "vllm"]


def test_a_bad_file_is_caught_by_the_same_check() -> None:
    with pytest.raises(ValueError):
        PyCompose.from_yaml("services:\n  app:\n    imag: kbqa\n")


def test_every_kbqa_variable_is_a_setting(compose: dict[str, Any]) -> None:
    settings_vars = {f"KBQA_{name.upper()}" for name in Settings.model_fields}
    for name, service in compose["services"].items():
        for variable in _environment(service):
            if variable.startswith("KBQA_"):
                assert variable in settings_vars, f"{name} sets {variable}, which rag.config does not read"
    # and the values the app gets are valid settings
    app_env = {
        key.removeprefix("KBQA_").lower(): value
        for key, value in _environment(compose["services"]["app"]).items()
        if key.startswith("KBQA_")
    }
    Settings(**app_env)


def test_app_is_wired_to_the_vllm_and_chroma_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    app_env = _environment(services["app"])
    llm = urlparse(app_env["KBQA_LLM_BASE_URL"])
    assert llm.hostname == "vllm" and llm.path == "/v1"
    assert str(llm.port) == _flag(services["vllm"]["command"], "--port")
    assert app_env["KBQA_LLM_MODEL"] == _flag(services["vllm"]["command"], "--model")
    assert app_env["KBQA_LLM_API_KEY"] == _flag(services["vllm"]["command"], "--api-key")
    assert app_env["KBQA_CHROMA_HOST"] == "chroma"
    assert app_env["KBQA_CHROMA_PORT"] == "8000"  # the Chroma image serves on 8000
    assert services["chroma"]["healthcheck"]["test"][-1].endswith("/localhost/8000")
    published = [str(port).split(":")[-1] for port in services["app"]["ports"]]
    assert published == [app_env["KBQA_PORT"]]
    assert app_env["KBQA_HOST"] == "0.0.0.0"  # reachable from outside its container
    assert f"localhost:{app_env['KBQA_PORT']}/health" in services["app"]["healthcheck"]["test"][-1]


def test_app_waits_for_healthy_backends(compose: dict[str, Any]) -> None:
    services = compose["services"]
    depends = services["app"]["depends_on"]
    assert set(depends) == {"vllm", "chroma"}
    for name in depends:
        assert depends[name]["condition"] == "service_healthy"
        assert services[name]["healthcheck"]["test"], name


def test_images_build_and_gpu(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["vllm"]["image"].startswith("vllm/vllm-openai:")
    [device] = services["vllm"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    # The Chroma server speaks the protocol of the client version the app pins.
    pinned = re.search(r"^chromadb==(\S+)$", (PROJECT_ROOT / "requirements.lock").read_text(), re.M)
    assert pinned and services["chroma"]["image"] == f"chromadb/chroma:{pinned.group(1)}"
    assert services["app"]["build"] == "."
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert 'CMD ["python", "app.py"]' in dockerfile and "requirements.lock" in dockerfile


def test_volumes_are_declared(compose: dict[str, Any]) -> None:
    named = set(compose.get("volumes") or {})
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in named, f"volume {source} is not declared"
    assert Path(PROJECT_ROOT / ".dockerignore").is_file()
