"""What `pip install .` gives a CI runner or a gateway: the core only (no embedded service, no age,
no hashing), a working `validate`, and a clear "install the extra" error where an extra is needed.
Also: the committed locks satisfy pyproject.toml and the embedded service's own
reconciler_service/pyproject.toml, so `make setup` installs what both ask for."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import reconciler

REPO = Path(reconciler.__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SERVICE_PYPROJECT = tomllib.loads((REPO / "reconciler_service/pyproject.toml").read_text())
OPTIONAL = {"werkzeug", "aiosmtpd", "atpublic", "attrs", "pyrage", "argon2-cffi", "bcrypt"}
# Building a venv takes ~30 s on an idle machine; allow for a loaded one.
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="session")
def core_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with a real `pip install .` of a copy of the sources (one per session, ~20 s with
    a warm pip cache; the build must not litter the checkout)."""
    tmp = tmp_path_factory.mktemp("core-install")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "reconciler", src / "reconciler", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True, timeout=120)
    install = [str(tmp / "venv/bin/python"), "-m", "pip", "install", "--quiet", str(src)]
    done = subprocess.run(install, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp / "venv/bin"


def _installed(bin_dir: Path) -> set[str]:
    freeze = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {canonicalize_name(line.split("==")[0]) for line in freeze.splitlines() if "==" in line}


def _reconciler(
    bin_dir: Path, *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    return subprocess.run(
        [str(bin_dir / "reconciler"), *args],
        cwd=cwd,
        env={**environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_plain_install_holds_no_service_age_or_hashing_packages(core_bin: Path) -> None:
    installed = _installed(core_bin)
    assert "reconciler" in installed
    assert OPTIONAL & installed == set()
    assert not (core_bin / "reconciler-service").exists()


def test_the_tool_ships_the_contract_the_service_serves(core_bin: Path) -> None:
    """The OpenAPI document travels with the http backend (docs/contract.md)."""
    code = (
        "from importlib import resources; print(resources.files('reconciler.backend.http') / 'openapi.json')"
    )
    run = subprocess.run([str(core_bin / "python"), "-c", code], capture_output=True, text=True, check=True)
    assert Path(run.stdout.strip()).read_bytes() == (REPO / "reconciler_service/openapi.json").read_bytes()


def test_validate_works_on_a_plain_install(core_bin: Path, tmp_path: Path) -> None:
    shutil.copytree(REPO / "users", tmp_path / "users")
    run = _reconciler(core_bin, "validate", "--users", "users", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["secret", "encrypt", "--recipient", "age1qqqq"], "age"),
        (["render", "--users", "users", "--mail-dir", "mail", "--no-reload"], "mail"),
    ],
)
def test_a_missing_extra_is_named_without_a_traceback(
    core_bin: Path, tmp_path: Path, args: list[str], extra: str
) -> None:
    shutil.copytree(REPO / "users", tmp_path / "users")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets/legacy-crm.key").write_text("legacyKey1234\n")
    keys = {name: "demoKey12345" for name in ("BILLING_API_KEY", "NEWSLETTER_API_KEY", "RECONCILER_API_KEY")}
    run = _reconciler(core_bin, *args, cwd=tmp_path, env=keys)
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"pip install 'reconciler[{extra}]'" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "mail/dovecot").exists()  # the mail step failed before writing


def _pins(lock: Path) -> dict[str, str]:
    found = re.findall(r"^([A-Za-z0-9_.\-]+)==([^ ;\\]+)", lock.read_text(), flags=re.MULTILINE)
    return {canonicalize_name(name): version for name, version in found}


def _requirements(*extras: str) -> list[Requirement]:
    project = PYPROJECT["project"]
    # The build backend too: the project is installed from the lock with --no-build-isolation.
    texts = [*PYPROJECT["build-system"]["requires"], *project["dependencies"]]
    for extra in extras:
        texts += project["optional-dependencies"][extra]
    return [r for r in map(Requirement, texts) if canonicalize_name(r.name) != "reconciler"]


@pytest.mark.parametrize(
    ("lock", "extras"),
    [("lock.txt", ("age", "mail", "test")), ("action.txt", ("age",))],
)
def test_the_lock_satisfies_pyproject(lock: str, extras: tuple[str, ...]) -> None:
    """A dependency edited in pyproject.toml without `make lock` fails here, not in someone's venv."""
    pins = _pins(REPO / "requirements" / lock)
    stale = [
        str(r)
        for r in _requirements(*extras)
        if canonicalize_name(r.name) not in pins or pins[canonicalize_name(r.name)] not in r.specifier
    ]
    assert stale == [], f"requirements/{lock} is out of date: run `make lock`"
    assert "--hash=sha256:" in (REPO / "requirements" / lock).read_text()


def test_the_lock_pins_every_dependency_of_the_embedded_service() -> None:
    """`make setup` installs reconciler_service with --no-deps: what it needs must come from the lock."""
    pins = _pins(REPO / "requirements/lock.txt")
    wanted = [*SERVICE_PYPROJECT["build-system"]["requires"], *SERVICE_PYPROJECT["project"]["dependencies"]]
    stale = [
        str(r)
        for r in map(Requirement, wanted)
        if canonicalize_name(r.name) not in pins or pins[canonicalize_name(r.name)] not in r.specifier
    ]
    assert stale == [], (
        "requirements/lock.txt lacks a dependency of reconciler_service: add it to the test extra"
    )
    assert SERVICE_PYPROJECT["project"]["scripts"] == {"reconciler-service": "reconciler_service.cli:main"}
