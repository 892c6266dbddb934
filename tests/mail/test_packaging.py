"""The mail templates ship inside the package: a built wheel carries them, and an unpacked wheel
(nothing of the checkout on its path) finds and renders them. No daemons."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import reconciler
from reconciler.mail import default_templates_dir

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(reconciler.__file__).resolve().parent


def _templates(base: Path) -> set[str]:
    return {p.relative_to(base).as_posix() for p in base.rglob("*.j2")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the sources (the build must not litter the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "reconciler", src / "reconciler", ignore=shutil.ignore_patterns("__pycache__"))
    # With build isolation, as `pip install .` builds it (the setuptools pyproject.toml asks for).
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q"]
    subprocess.run([*command, "-w", str(tmp / "dist"), str(src)], check=True, capture_output=True)
    (built,) = (tmp / "dist").glob("reconciler-*.whl")
    return built


def test_the_templates_live_in_the_package() -> None:
    assert default_templates_dir() == PACKAGE / "templates"
    assert {
        "dovecot/users.passwd.j2",
        "postfix/sasl_passwd.j2",
        "postfix/sender_login_maps.j2",
        "postfix/sender_relayhost_maps.j2",
        "snippets/dovecot-passdb.conf.j2",
        "snippets/postfix-main.cf.j2",
    } <= _templates(default_templates_dir())


def test_the_wheel_carries_every_template(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        shipped = {
            name.removeprefix("reconciler/templates/")
            for name in archive.namelist()
            if name.startswith("reconciler/templates/") and name.endswith(".j2")
        }
    assert shipped == _templates(default_templates_dir())


def test_an_unpacked_wheel_renders_without_the_checkout(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    script = (
        "import reconciler, pathlib\n"
        "from reconciler.config import Settings\n"
        "from reconciler.mail import default_templates_dir, render_snippets, template_environment\n"
        "print(pathlib.Path(reconciler.__file__).resolve().parent)\n"
        "print(default_templates_dir())\n"
        "env = template_environment(default_templates_dir())\n"
        "print(render_snippets(pathlib.Path('/m'), Settings(), env)['postfix-main.cf'])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("RECONCILER_TEMPLATES_DIR", None)
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, check=True, capture_output=True, text=True
    ).stdout.splitlines()
    assert out[0] == str((site / "reconciler").resolve())
    assert out[1] == str((site / "reconciler/templates").resolve())
    assert "smtpd_sender_login_maps = texthash:/m/postfix/sender_login_maps" in out
