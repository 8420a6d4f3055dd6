"""docker/: what can be checked without a Docker engine.

The compose file parses and references only images built here or pinned upstream, and
only variables that ``docker/env.example`` defines; no secret is written into it; only
the dashboard is published, on 127.0.0.1. The Dockerfile installs with the Makefile's
``make install`` (the README's install), and that very command, run here in a fresh
virtual environment, gives a working ``grokforecast`` with the cluster extras.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
OUR_IMAGES = {"grokforecast:cpu", "grokforecast:cuda"}
PINNED = re.compile(r"^[\w./-]+:\d+(\.\d+)+[\w.-]*$")  # name:1.2[.3][-variant], never latest


def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def default_of(value: str) -> str:
    """``${NAME:-default}`` as the engine reads it when NAME is unset."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def env_example() -> dict[str, str]:
    """The variables docker/env.example sets, and those it documents commented out."""
    lines = (DOCKER / "env.example").read_text().splitlines()
    assignments = [line.removeprefix("# ") for line in lines]
    return dict(line.split("=", 1) for line in assignments if re.fullmatch(r"[A-Z_]+=\S*", line))


def env_example_set() -> set[str]:
    lines = (DOCKER / "env.example").read_text().splitlines()
    return {line.split("=", 1)[0] for line in lines if line and not line.startswith("#")}


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), one list per stage."""
    text = re.sub(r"\\\n\s*", " ", (DOCKER / "Dockerfile").read_text())
    stages: list[list[str]] = []
    for line in (line.strip() for line in text.splitlines()):
        if line.startswith("FROM "):
            stages.append([])
        if line and not line.startswith("#") and stages:
            stages[-1].append(line)
    return stages


def test_the_compose_file_names_every_service_and_only_images_built_here_or_pinned() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "worker", "dashboard", "ray-head", "ray-worker", "sweep"}
    for name, service in services.items():
        image = default_of(service["image"])
        assert image in OUR_IMAGES or PINNED.match(image), f"{name}: {image} is not pinned"
    # The image the cluster runs is the one `make docker-build` tags from docker/Dockerfile.
    makefile = (ROOT / "Makefile").read_text()
    assert "$(ENGINE) build -f docker/Dockerfile -t grokforecast:cpu ." in makefile
    assert {default_of(s["image"]) for s in services.values()} - OUR_IMAGES == {"postgres:16.4-bookworm"}


def test_the_compose_file_holds_no_secret_and_only_variables_env_example_defines() -> None:
    text = (DOCKER / "compose.yaml").read_text()
    referenced = set(re.findall(r"\$\{(\w+)", text))
    assert referenced <= set(env_example()), referenced - set(env_example())
    assert {"POSTGRES_PASSWORD", "RAY_AUTH_TOKEN"} <= referenced
    # Only the secrets are set: a set value would win over the command line (podman-compose 1.0).
    assert env_example_set() == {"POSTGRES_PASSWORD", "RAY_AUTH_TOKEN"}
    required = set(re.findall(r"\$\{(\w+):\?", text))
    defaulted = set(re.findall(r"\$\{(\w+):-", text))
    assert referenced == required | defaulted and required <= env_example_set()
    for service in compose()["services"].values():
        for key, value in (service.get("environment") or {}).items():
            if re.search("PASSWORD|TOKEN|SECRET", key):
                assert str(value).startswith("${"), f"{key} is written into compose.yaml"
        assert "password" not in str(service.get("command", "")).lower()
    # The real secrets live in docker/.env, which git and the image build both ignore.
    assert "docker/.env" in (ROOT / ".gitignore").read_text().splitlines()
    assert "docker/.env" in (ROOT / ".dockerignore").read_text().splitlines()


def test_only_the_dashboard_is_published_and_only_on_localhost() -> None:
    services = compose()["services"]
    published = {name: s["ports"] for name, s in services.items() if "ports" in s}
    assert list(published) == ["dashboard"]
    assert all(port.startswith("127.0.0.1:") for port in published["dashboard"])
    assert "healthcheck" in services["dashboard"] and "healthcheck" in services["postgres"]
    # Ray's nodes and the one-shot Ray sweep start only with the `ray` profile.
    assert all(services[name]["profiles"] == ["ray"] for name in ("ray-head", "ray-worker", "sweep"))


def test_the_image_is_slim_pinned_and_runs_as_a_user() -> None:
    stages = dockerfile_stages()
    assert len(stages) == 2  # build, runtime
    default_base = re.search(r"^ARG BASE_IMAGE=(\S+)", (DOCKER / "Dockerfile").read_text(), re.M)[1]
    assert PINNED.match(default_base), f"unpinned base image {default_base}"
    assert all(stage[0].split()[1] == "${BASE_IMAGE}" for stage in stages)
    build, runtime = stages
    runtime_text = "\n".join(runtime)
    assert "apt-get" not in runtime_text and "make" not in runtime_text.replace("mkdir", "")
    users = [line.split()[1] for line in runtime if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    # The shared runs volume is writable by that user: its mount point is theirs, made as root.
    user_line = runtime.index(f"USER {users[-1]}")
    assert any("chown" in line and "runs" in line for line in runtime[:user_line])
    assert any("make install" in line for line in build)


def install_command(venv: Path) -> list[str]:
    """The Dockerfile's ``make install`` with its build arguments, into ``venv``."""
    run = next(line for line in dockerfile_stages()[0] if "make install" in line)
    words = shlex.split(next(part for part in run.split("&&") if "make install" in part))
    args = {w.split("=", 1)[0]: w.split("=", 1)[1] for w in words[2:]}
    args["VENV"] = str(venv)
    args["TORCH_SPEC"] = re.search(r"ARG TORCH_SPEC=(\S+)", (DOCKER / "Dockerfile").read_text())[1]
    # The image pulls torch from PyTorch's CPU index; here the same wheel comes from the
    # local wheel cache (PIP_FIND_LINKS), as in the README's install.
    args["TORCH_INDEX_URL"] = ""
    assert words[:2] == ["make", "install"]
    return ["make", "-C", str(ROOT), "install", *(f"{k}={v}" for k, v in args.items())]


@pytest.mark.slow
def test_the_dockerfile_install_step_works_in_a_fresh_virtual_environment(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    command = install_command(venv)
    assert "EDITABLE=" in command and any(a.startswith("EXTRAS=") and "ray" in a for a in command)
    subprocess.run(
        command, check=True, capture_output=True, text=True, env=os.environ | {"PYTHONDONTWRITEBYTECODE": "1"}
    )
    shown = subprocess.run(
        [
            venv / "bin" / "python",
            "-c",
            "import grokforecast, psycopg, ray.tune, torch; print(grokforecast.__file__)",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not beside the checkout, which would shadow the installed package
    )
    assert str(venv) in shown.stdout  # the package itself, not the editable checkout
    help_text = subprocess.run(
        [venv / "bin" / "grokforecast", "sweep", "--help"], check=True, capture_output=True, text=True
    )
    assert "GROKFORECAST_STORAGE" in help_text.stdout


@pytest.mark.parametrize("service", ["worker", "dashboard", "sweep"])
def test_containers_find_the_study_database_in_the_environment(service: str) -> None:
    environment = compose()["services"][service]["environment"]
    assert environment["GROKFORECAST_STORAGE"].startswith("postgresql+psycopg://grok:${POSTGRES_PASSWORD")
