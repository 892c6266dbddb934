"""Issue 20, item 1: a key fingerprint on the service cannot be checked against guessed keys offline.

The fingerprint secret once defaulted to HMAC(own key, constant): the admin's fingerprint was then
HMAC(HMAC(K, c), K), and whoever could read it tested guesses of K at HMAC speed, with nothing else.
Now the secret is independent of every key: `reconciler secret init` makes it, and without one a
plan says keys cannot be compared and apply refuses to record anything.
"""

from __future__ import annotations

import hashlib
import hmac
import stat
from pathlib import Path

from reconciler.plan import FINGERPRINT_ANNOTATION
from reconciler.secrets import ApiKey, fingerprint
from tests.engine.conftest import Repo
from tests.fixtures.service import new_key

SECRET_ENV = "RECONCILER_FINGERPRINT_SECRET"
READER = "reader@example.com"


def _without_secret_env(repo: Repo) -> dict[str, str]:
    """The deployment as shipped: no RECONCILER_FINGERPRINT_SECRET in the environment."""
    return {k: v for k, v in repo.env().items() if k != SECRET_ENV}


def _key_derived_guess(guess: str) -> str:
    """What an attacker who knows the code computes for a guess, if the secret came from the key."""
    derived = hmac.new(guess.encode(), b"reconciler key fingerprint v1", hashlib.sha256).digest()
    return fingerprint(ApiKey(guess), derived)


def _fingerprints_seen_by(repo: Repo, api_user: str | None, api_key: str | None) -> dict[str, str]:
    with repo.service.client(api_user, api_key) as client:
        users = client.list_users()
    return {u.api_user: fp for u in users if (fp := u.annotations.get(FINGERPRINT_ANNOTATION))}


def test_a_fingerprint_a_normal_user_reads_cannot_be_checked_against_guessed_keys_offline(
    repo: Repo,
) -> None:
    # The read-only plan credential of docs/gitops.md: a normal user allowed to list users.
    repo.write(READER, role="normal", operation=True, access={"http_api": True, "smtp": False})
    env = _without_secret_env(repo)
    repo.run("secret", "init", env=env)  # what the runbook says to do once (not there before)
    applied = repo.run("apply", "--auto-approve", env=env)
    assert applied.code == 0, applied.output

    admin = repo.service.admin_user
    seen = _fingerprints_seen_by(repo, READER, repo.keys[READER])
    # Whatever the service shows a reader today, the worst case is that the admin's leaks anyway.
    seen |= _fingerprints_seen_by(repo, None, None)
    assert admin in seen, "the reconciler records a fingerprint for every key it sets"

    # A dictionary that holds the right key: the attack works whenever the secret is derivable.
    guesses = [new_key() for _ in range(50)] + [repo.service.admin_key]
    hits = [
        user
        for user, recorded in seen.items()
        for guess in guesses
        if recorded.partition(";sid=")[0] == _key_derived_guess(guess)
    ]
    assert hits == [], f"an offline guess confirmed the key of {hits}"

    secret_file = repo.root / ".reconciler/fingerprint.secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600


def test_without_a_secret_a_plan_says_keys_cannot_be_compared_and_apply_records_nothing(
    repo: Repo,
) -> None:
    repo.write("app@example.com", access={"http_api": True})
    env = _without_secret_env(repo)
    planned = repo.run("plan", "--detailed-exitcode", env=env)
    assert planned.code == 2, planned.output  # the create is pending
    assert "keys cannot be compared" in planned.stdout
    assert "reconciler secret init" in planned.stdout

    applied = repo.run("apply", "--auto-approve", env=env)
    assert applied.code == 1
    assert "reconciler secret init" in applied.stderr
    assert "app@example.com" not in repo.live(), "nothing is applied without a fingerprint secret"


def test_secret_init_makes_a_private_file_once_and_prints_its_path(repo: Repo) -> None:
    env = _without_secret_env(repo)
    first = repo.run("secret", "init", env=env)
    assert first.code == 0, first.output
    path = Path(first.stdout.strip())
    assert path == repo.root / ".reconciler/fingerprint.secret"
    content = path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(content.strip()) >= 32
    for key in repo.secrets():
        assert key.encode() not in content
    again = repo.run("secret", "init", env=env)
    assert again.code == 0 and path.read_bytes() == content, "never overwritten"
