"""age-encrypted keys: `secret encrypt` and `agekeys.decrypt`, with real identities from pyrage."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from pyrage import x25519
from ruamel.yaml import YAML

from reconciler import agekeys
from reconciler.errors import SecretError
from tests.fixtures.service import new_key
from tests.ops.conftest import Repo


def _encrypt_via_cli(repo: Repo, key: str, *recipients: str) -> str:
    from click.testing import CliRunner

    from reconciler.cli import group

    args = ["secret", "encrypt"]
    for recipient in recipients:
        args += ["--recipient", recipient]
    result = CliRunner().invoke(group, args, input=key + "\n", env=repo.env(), standalone_mode=False)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert key not in result.stdout and key not in result.stderr
    return result.stdout


def test_round_trip_from_the_printed_yaml(repo: Repo) -> None:
    identity = x25519.Identity.generate()
    key = new_key()
    printed = _encrypt_via_cli(repo, key, str(identity.to_public()))
    document = YAML(typ="safe").load(printed)
    armored = document["api_key"]["age"]
    assert armored.startswith(agekeys.ARMOR_BEGIN)
    assert agekeys.decrypt(armored, agekeys.load_identities({agekeys.IDENTITY_ENV: str(identity)})) == key


def test_every_recipient_can_decrypt_alone(repo: Repo, tmp_path: Path) -> None:
    ci, oncall = x25519.Identity.generate(), x25519.Identity.generate()
    key = new_key()
    printed = _encrypt_via_cli(repo, key, str(ci.to_public()), str(oncall.to_public()))
    armored = YAML(typ="safe").load(printed)["api_key"]["age"]
    identity_file = tmp_path / "oncall.agekey"
    identity_file.write_text(f"# created: today\n# public key: {oncall.to_public()}\n{oncall}\n")
    identities = agekeys.load_identities({agekeys.IDENTITY_FILE_ENV: str(identity_file)})
    assert agekeys.decrypt(armored, identities) == key
    assert agekeys.decrypt(armored, [ci]) == key


def test_indented_armor_from_yaml_still_decrypts() -> None:
    identity = x25519.Identity.generate()
    armored = agekeys.encrypt("k1abcdefgh", [str(identity.to_public())])
    indented = "\n".join("      " + line for line in armored.splitlines()) + "\n\n"
    assert agekeys.decrypt(indented, [identity]) == "k1abcdefgh"


def test_wrong_identity_is_a_clear_error_without_key_material() -> None:
    right, wrong = x25519.Identity.generate(), x25519.Identity.generate()
    armored = agekeys.encrypt("k1abcdefgh", [str(right.to_public())])
    with pytest.raises(SecretError, match="not encrypted to any of the identities") as caught:
        agekeys.decrypt(armored, agekeys.load_identities({agekeys.IDENTITY_ENV: str(wrong)}))
    message = str(caught.value)
    assert str(wrong) not in message
    assert "k1abcdefgh" not in message
    assert "AGE-SECRET-KEY" not in message


def test_missing_identity_names_both_variables() -> None:
    with pytest.raises(SecretError) as caught:
        agekeys.load_identities({})
    assert agekeys.IDENTITY_ENV in str(caught.value)
    assert agekeys.IDENTITY_FILE_ENV in str(caught.value)


def test_a_malformed_identity_is_not_echoed() -> None:
    bogus = "AGE-SECRET-KEY-1NOTREALLYAKEY"
    with pytest.raises(SecretError, match="identity 1 is not an age X25519 identity") as caught:
        agekeys.load_identities({agekeys.IDENTITY_ENV: bogus})
    assert bogus not in str(caught.value)


def test_unreadable_identity_file(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="cannot read the age identity file"):
        agekeys.load_identities({agekeys.IDENTITY_FILE_ENV: str(tmp_path / "absent")})


def test_damaged_or_plain_text_is_refused() -> None:
    identity = x25519.Identity.generate()
    with pytest.raises(SecretError, match="not armored age data"):
        agekeys.decrypt("k1abcdefgh", [identity])
    armored = agekeys.encrypt("k1abcdefgh", [str(identity.to_public())]).splitlines()
    armored[2] = armored[2][::-1]
    with pytest.raises(SecretError, match="damaged"):
        agekeys.decrypt("\n".join(armored), [identity])


def test_encrypt_refuses_an_invalid_key_without_echoing_it(repo: Repo) -> None:
    recipient = str(x25519.Identity.generate().to_public())
    from tests.ops.conftest import run_cli

    runner_env = repo.env()
    result = run_cli(["secret", "encrypt", "-r", recipient], runner_env, repo.root)
    # No stdin at all: an empty key is refused, and nothing is printed to paste.
    assert result.code == 1
    assert "the key from stdin is not valid" in result.stderr
    assert "BEGIN AGE" not in result.stdout


def test_encrypt_refuses_a_bad_recipient_before_reading_the_key(repo: Repo) -> None:
    printed = _encrypt_via_cli_failing(repo, "age1nope")
    assert "recipient #1 is not an age1... public key" in printed


def _encrypt_via_cli_failing(repo: Repo, recipient: str) -> str:
    from tests.ops.conftest import run_cli

    result = run_cli(["secret", "encrypt", "--recipient", recipient], repo.env(), repo.root)
    assert result.code == 1
    return result.stderr


def test_the_key_is_never_an_argument() -> None:
    from reconciler.cli.ops import encrypt

    # Only flags besides --recipient (the global -q/-v/--no-color may be attached to every verb).
    taking_values = [
        p.name for p in encrypt.params if not (isinstance(p, click.Option) and (p.is_flag or p.count))
    ]
    assert taking_values == ["recipients"]


def test_a_secret_identity_passed_as_recipient_is_never_echoed(repo: Repo) -> None:
    identity = str(x25519.Identity.generate())
    public = str(x25519.Identity.generate().to_public())
    from tests.ops.conftest import run_cli

    args = ["secret", "encrypt", "-r", public, "-r", identity]
    result = run_cli(args, repo.env(), repo.root)
    assert result.code == 1
    assert identity not in result.output
    assert identity[len("AGE-SECRET-KEY-1") :] not in result.output
    assert "recipient #2 is not an age1... public key" in result.stderr
    assert "it looks like a secret identity: pass the public key (age1...) instead" in result.stderr
    assert "BEGIN AGE" not in result.stdout


def test_a_rejected_recipient_is_named_by_position_not_value(repo: Repo) -> None:
    stderr = _encrypt_via_cli_failing(repo, "age1nopeXq7SecretKey9")
    assert "recipient #1 is not an age1... public key" in stderr
    assert "age1nopeXq7SecretKey9" not in stderr
    assert "secret identity" not in stderr
