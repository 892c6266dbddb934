"""contrib/systemd/: the units a gateway installs pass `systemd-analyze verify`, and the tmpfiles
entry creates the directories the service may write."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "systemd"
INSTALLED = "/opt/reconciler/bin/reconciler"  # where docs/mail.md installs the tool


def _verify(*units: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_render_service_and_timer_verify_clean(tmp_path: Path) -> None:
    for name in ("reconciler-render.service", "reconciler-render.timer"):
        shutil.copy(CONTRIB / name, tmp_path / name)
    service = tmp_path / "reconciler-render.service"
    text = service.read_text()
    assert f"ExecStart={INSTALLED} render " in text
    # verify checks that each command exists: point it at this test's installed entry point.
    service.write_text(text.replace(INSTALLED, str(Path(sys.executable).with_name("reconciler"))))

    result = _verify(service, tmp_path / "reconciler-render.timer")

    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    broken = tmp_path / "reconciler-render.service"
    broken.write_text("[Service]\nType=oneshot\nExecStart=/nonexistent/reconciler render\nBogus=1\n")
    result = _verify(broken)
    assert result.returncode != 0
    assert "Unknown key 'Bogus'" in result.stderr


def test_tmpfiles_creates_the_writable_directories(tmp_path: Path) -> None:
    subprocess.run(
        ["systemd-tmpfiles", "--create", f"--root={tmp_path}", str(CONTRIB / "reconciler.tmpfiles.conf")],
        check=True,
        timeout=60,
    )
    modes = {
        p: (tmp_path / p.lstrip("/")).stat().st_mode & 0o777
        for p in ("/etc/reconciler/mail", "/var/lib/reconciler")
    }
    assert modes == {"/etc/reconciler/mail": 0o755, "/var/lib/reconciler": 0o750}
    service = (CONTRIB / "reconciler-render.service").read_text()
    assert "ReadWritePaths=/etc/reconciler/mail /var/lib/reconciler" in service
