"""docs/backends.md's sample backend, a separate package (examples/backend-sample), installed into
a fresh virtualenv the way a user would (offline: no dependency resolution, this checkout's
reconciler underneath), found through its `reconciler.backends` entry point, and passing the
conformance kit there."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "backend-sample"


def test_the_sample_backend_installs_as_its_own_package_and_passes_the_kit(tmp_path: Path) -> None:
    source = shutil.copytree(SAMPLE, tmp_path / "backend-sample")  # the build leaves files behind
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    _see_this_checkouts_packages(python)
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        str(python),
        "install",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        str(source),
    )
    found = _run(
        str(python),
        "-c",
        "from reconciler.backend.registry import installed; "
        "print([b.target for b in installed() if b.name == 'sample-file'])",
    )
    assert found.stdout.strip() == "['reconciler_backend_sample:FACTORY']"
    kit = _run(str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "tests", cwd=source)
    assert " passed" in kit.stdout and "failed" not in kit.stdout, kit.stdout[-2000:]
    print(kit.stdout.strip().splitlines()[-1])


def _see_this_checkouts_packages(python: Path) -> None:
    """The new venv sees this venv's packages (pytest, reconciler itself, its dependencies)
    through a .pth line, so nothing is downloaded."""
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    here = sysconfig.get_paths()["purelib"]
    Path(purelib, "zz-parent-venv.pth").write_text(f"import site; site.addsitedir({here!r})\n")


def _run(*command: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, (
        f"{' '.join(command)}: {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done
