"""`secret keygen` and `secret generate`: the keys a newcomer needs, made by the tool itself."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.agekeys import decrypt, encrypt, parse_identities
from reconciler.model import KEY_RE
from tests.fixtures.cli import run_main

RECONCILER = str(Path(sys.executable).with_name("reconciler"))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keygen_writes_a_private_identity_and_prints_its_recipient(tmp_path: Path) -> None:
    out = tmp_path / "ci.agekey"
    result = run_main(["secret", "keygen", "-o", str(out)])
    assert result.code == 0, result.output
    recipient = result.stdout.strip()
    assert recipient.startswith("age1") and _mode(out) == 0o600
    identities = parse_identities(out.read_text(), str(out))
    assert decrypt(encrypt("Key12345abc", [recipient]), identities) == "Key12345abc"
    assert run_main(["secret", "keygen", "-o", str(out)]).code == 1  # never destroys an identity


def test_generate_writes_a_key_meeting_the_rule_to_a_private_file(tmp_path: Path) -> None:
    out = tmp_path / "billing.key"
    result = run_main(["secret", "generate", "-o", str(out)])
    assert result.code == 0, result.output
    key = out.read_text().strip()
    assert KEY_RE.fullmatch(key) and _mode(out) == 0o600
    assert key not in result.output


def test_generate_never_writes_to_a_pipe_unless_asked() -> None:
    piped = subprocess.run([RECONCILER, "secret", "generate"], capture_output=True, text=True, check=False)
    assert piped.returncode == 1 and piped.stdout == ""
    assert "--stdout" in piped.stderr
    asked = subprocess.run(
        [RECONCILER, "secret", "generate", "--stdout"], capture_output=True, text=True, check=False
    )
    assert asked.returncode == 0 and KEY_RE.fullmatch(asked.stdout.strip())


@pytest.mark.parametrize("length", [16, 128])
def test_every_generated_key_meets_the_rule(length: int) -> None:
    from reconciler.newkeys import generate_api_key

    keys = {generate_api_key(length).reveal() for _ in range(200)}
    assert len(keys) == 200 and all(KEY_RE.fullmatch(k) and len(k) == length for k in keys)
