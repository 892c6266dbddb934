"""What the gateway serves after an apply, as a table: the service's answer decides, not users/."""

from __future__ import annotations

from typing import Any

from reconciler.mail.accepted import Served, accepted_view
from reconciler.model import UserSpec
from reconciler.secrets import ApiKey


def user(name: str, **fields: Any) -> UserSpec:
    data: dict[str, Any] = {"api_user": name, "api_key": {"from_env": "K"}, "role": "normal"}
    return UserSpec.model_validate({**data, "access": {"smtp": True}, **fields})


NEW, OLD = ApiKey("NewKey123"), ApiKey("OldKey123")
SERVED = {"a@example.com": Served("a@example.com", ("a@example.com", "@a.example.com"), OLD)}


def test_everything_applied_renders_the_desired_state() -> None:
    users = (user("a@example.com", smtp_senders=["a@example.com"]),)
    view = accepted_view(users, {"a@example.com": NEW}, (), SERVED)
    assert (view.users, view.keys, view.kept, view.left_out) == (users, {"a@example.com": NEW}, (), ())


def test_a_refused_key_change_keeps_the_old_key_and_senders() -> None:
    view = accepted_view([user("a@example.com")], {"a@example.com": NEW}, {"A@example.com"}, SERVED)
    assert [u.senders() for u in view.users] == [("a@example.com", "@a.example.com")]
    assert view.keys["a@example.com"].reveal() == OLD.reveal()
    assert view.kept == ("a@example.com",)


def test_a_refused_create_or_unlock_gets_no_lines() -> None:
    users = [user("n@example.com"), user("b@example.com")]
    view = accepted_view(users, {"n@example.com": NEW, "b@example.com": NEW}, {"n@example.com"}, SERVED)
    assert [u.api_user for u in view.users] == ["b@example.com"]
    assert "n@example.com" not in view.keys
    assert view.left_out == ("n@example.com",)


def test_a_refused_lock_or_delete_keeps_serving_and_a_successful_one_does_not() -> None:
    # users/ no longer lists a@ (deleted) and locks c@; only a@'s delete failed.
    served = {**SERVED, "c@example.com": Served("c@example.com", ("c@example.com",), OLD)}
    view = accepted_view([user("c@example.com", locked=True)], {}, {"a@example.com"}, served)
    assert [(u.api_user, u.locked) for u in view.users] == [("c@example.com", True), ("a@example.com", False)]
    assert view.kept == ("a@example.com",)
