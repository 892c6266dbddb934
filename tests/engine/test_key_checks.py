"""Plans that hold no user keys: a read-only API user can make them, and every key they could not
compare is listed (text, Markdown, JSON) instead of hiding behind "No changes"."""

from __future__ import annotations

import json

from pyrage import x25519
from ruamel.yaml import YAML

from reconciler.agekeys import encrypt
from reconciler.plan import KEY_SOURCE_ANNOTATION
from tests.engine.conftest import Repo
from tests.engine.markdown import render_html
from tests.fixtures.service import new_key

READER = "reader@example.com"


def _declare_reader(repo: Repo) -> None:
    """The read-only API user is declared in users/ like any other (else apply deletes it)."""
    repo.write(READER, operation=True, access={"http_api": True, "smtp": False})


def _read_only_env(repo: Repo) -> dict[str, str]:
    """A pull request's plan job: a `normal` API user's credential, no user keys, no identity."""
    env = {k: v for k, v in repo.env().items() if not k.startswith("KEY_")}
    return env | {"RECONCILER_API_USER": READER, "RECONCILER_API_KEY": repo.keys[READER]}


def _write_age_user(repo: Repo, name: str, key: str, *recipients: str) -> None:
    data = {"api_user": name, "api_key": {"age": encrypt(key, list(recipients))}, "role": "normal"}
    with (repo.users / f"{name}.yaml").open("w") as handle:
        YAML().dump(data, handle)
    repo.keys[name] = key


def test_a_normal_api_user_can_plan_and_its_own_key_is_never_taken_for_the_admins(repo: Repo) -> None:
    _declare_reader(repo)
    repo.write("a@example.com", access={"smtp": True})
    assert repo.run("apply", "--auto-approve").code == 0
    repo.write("a@example.com", access={"smtp": True}, timezone="UTC")
    with repo.service.client() as console:  # a console edit: the plan names who made it
        console.update_user("a@example.com", {"role": "admin"})
    env = _read_only_env(repo)
    result = repo.run("plan", "--detailed-exitcode", "--format", "json", env=env)
    assert result.code == 2, result.output
    document = json.loads(result.stdout)
    assert [(c["api_user"], [f["field"] for f in c["fields"]]) for c in document["changes"]] == [
        ("a@example.com", ["role", "timezone"])
    ]
    (drift,) = document["changes"][0]["drift"]  # the operation log is readable as a normal user
    assert drift["changed_by"] == repo.service.admin_user
    assert document["notes"] == []
    assert all(c["api_key"] is None for c in document["changes"])  # no false "key changed"
    skipped = {k["api_user"]: k["reason"] for k in document["key_checks"]["skipped"]}
    assert set(skipped) == {"a@example.com", READER, repo.service.admin_user}
    # The service refuses the reader's writes; the plan needed none.
    assert repo.run("apply", "--auto-approve", env=env).code == 1
    assert repo.live()["a@example.com"].timezone != "UTC"


def test_the_admins_file_does_not_get_the_read_only_users_key(repo: Repo) -> None:
    _declare_reader(repo)
    # The admin's file reads RECONCILER_API_KEY, as in this repository's users/.
    path = repo.users / f"{repo.service.admin_user}.yaml"
    path.write_text(path.read_text().replace(repo.var(repo.service.admin_user), "RECONCILER_API_KEY"))
    assert repo.run("apply", "--auto-approve").code == 0
    result = repo.run("plan", "--detailed-exitcode", env=_read_only_env(repo))
    assert result.code == 0, result.output
    assert "No changes in what could be checked; 2 key checks skipped." in result.stdout
    assert f"RECONCILER_API_KEY holds the key of {READER}" in result.stdout


def test_skipped_key_checks_are_listed_in_every_format(repo: Repo) -> None:
    repo.write("a@example.com", access={"smtp": True})
    repo.write("b@example.com", api_key={"from_file": "../keys/b.key"})
    (repo.root / "keys").mkdir()
    (repo.root / "keys" / "b.key").write_text(new_key())
    assert repo.run("apply", "--auto-approve").code == 0
    (repo.root / "keys" / "b.key").unlink()
    env = {k: v for k, v in repo.env().items() if k != repo.var("a@example.com")}

    text = repo.run("plan", "--detailed-exitcode", env=env)
    assert text.code == 0, text.output  # nothing that could be checked changed
    assert text.stdout.startswith("No changes in what could be checked; 2 key checks skipped.")
    assert f"a@example.com: environment variable {repo.var('a@example.com')} is not set" in text.stdout
    assert "b@example.com: key file " in text.stdout and "b.key does not exist" in text.stdout
    assert "No changes. The service" not in text.stdout

    markdown = repo.run("plan", "--detailed-exitcode", "--format", "markdown", env=env).stdout
    html = render_html(markdown)
    assert "<strong>No changes in what could be checked; 2 key checks skipped.</strong>" in html
    assert "<h4>Key checks skipped (2; 1 checked)</h4>" in html
    assert "<td><code>a@example.com</code></td>\n<td>environment variable " in html

    document = json.loads(repo.run("plan", "--detailed-exitcode", "--format", "json", env=env).stdout)
    assert document["key_checks"]["checked"] == 1  # the admin's
    assert [k["api_user"] for k in document["key_checks"]["skipped"]] == ["a@example.com", "b@example.com"]
    assert document["key_checks_skipped"] is True


def test_a_changed_age_ciphertext_is_a_key_change_without_the_identity(repo: Repo) -> None:
    ci, alice = x25519.Identity.generate(), x25519.Identity.generate()
    key = new_key()
    _write_age_user(repo, "sealed@example.com", key, str(ci.to_public()))
    with_identity = repo.env() | {"RECONCILER_AGE_IDENTITY": str(ci)}
    assert repo.run("apply", "--auto-approve", env=with_identity).code == 0
    recorded = repo.live()["sealed@example.com"].annotations[KEY_SOURCE_ANNOTATION]
    assert recorded.startswith("age-sha256:") and len(recorded) == len("age-sha256:") + 64

    # The same ciphertext: checked by its digest, nothing to do, nothing skipped.
    same = repo.run("plan", "--detailed-exitcode", "--format", "json")
    assert same.code == 0, same.output
    assert json.loads(same.stdout)["key_checks"] == {"checked": 2, "skipped": []}

    # A new key (or the same key for another recipient): the pull request shows a key change.
    _write_age_user(repo, "sealed@example.com", new_key(), str(ci.to_public()), str(alice.to_public()))
    changed = repo.run("plan", "--detailed-exitcode")
    assert changed.code == 2, changed.output
    assert "(sensitive) will change  # encrypted value changed, checked at apply" in changed.stdout

    assert repo.run("apply", "--auto-approve", env=with_identity).code == 0
    assert repo.run("plan", "--detailed-exitcode").code == 0  # the new digest was recorded


def test_a_reencrypted_same_key_is_set_again_to_record_the_new_digest(repo: Repo) -> None:
    ci, alice = x25519.Identity.generate(), x25519.Identity.generate()
    key = new_key()
    _write_age_user(repo, "sealed@example.com", key, str(ci.to_public()))
    with_identity = repo.env() | {"RECONCILER_AGE_IDENTITY": str(ci)}
    assert repo.run("apply", "--auto-approve", env=with_identity).code == 0
    _write_age_user(repo, "sealed@example.com", key, str(ci.to_public()), str(alice.to_public()))
    result = repo.run("plan", "--detailed-exitcode", env=with_identity)
    assert result.code == 2
    assert "the key is set again to record its digest" in result.stdout
    assert repo.run("apply", "--auto-approve", env=with_identity).code == 0
    assert repo.run("plan", "--detailed-exitcode").code == 0
    assert repo.run("plan", "--detailed-exitcode", env=with_identity).code == 0
