"""The mailgun backend against the stand-in: the shared cases (cases.py) plus what only a
stand-in can show (request counts, paging, injected 429s, lock by delete)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from reconciler.backend.mailgun import CAPABILITIES, MailgunBackend
from reconciler.backend.mailgun.client import MailgunClient
from reconciler.config import Settings
from reconciler.errors import AuthError, ConfigError, NotFound, ServiceError, ServiceUnavailable
from reconciler_service.standins.mailgun import MailgunStandIn
from tests.mailgun.cases import KEY_A, KEY_B, CredentialCases
from tests.mailgun.conftest import ACCOUNT_KEY, DOMAINS


class TestStandIn(CredentialCases):
    pass


def test_a_rekey_sends_exactly_one_put_and_the_same_key_again_is_applied(
    backend: MailgunBackend, standin: MailgunStandIn
) -> None:
    backend.users.create("app@mg.example.com", {}, KEY_A, {})
    backend.users.set_key("app@mg.example.com", KEY_B)
    assert standin.count("PUT") == 1
    assert standin.authenticate("app@mg.example.com", KEY_B.reveal()) == "app@mg.example.com"
    backend.users.set_key("app@mg.example.com", KEY_B)  # refused by Mailgun as the same: applied
    assert standin.authenticate("app@mg.example.com", KEY_B.reveal()) == "app@mg.example.com"


def test_listing_pages_through_skip_and_limit_across_domains(
    backend: MailgunBackend, standin: MailgunStandIn
) -> None:
    logins = [f"app{i:03}@mg.example.com" for i in range(230)] + ["one@eu.example.org"]
    for login in logins:
        backend.users.create(login, {}, KEY_A, {})
    before = standin.count("GET")
    listed = [u.api_user for u in backend.users.list()]
    assert sorted(listed) == sorted(logins)
    assert standin.count("GET") - before == 3 + 1  # 100 + 100 + 30, and one page of the other domain


def test_429_is_retried_after_what_retry_after_says(backend: MailgunBackend, standin: MailgunStandIn) -> None:
    standin.fail_next(1, status=429, retry_after="1")
    started = time.monotonic()
    backend.users.create("app@mg.example.com", {}, KEY_A, {})
    assert time.monotonic() - started >= 1.0
    assert standin.logins() == ["app@mg.example.com"]


def test_5xx_is_retried_and_a_create_whose_answer_failed_is_settled(
    backend: MailgunBackend, standin: MailgunStandIn
) -> None:
    standin.fail_next(2, status=503, retry_after="0")
    backend.users.create("app@mg.example.com", {}, KEY_A, {})
    assert standin.logins() == ["app@mg.example.com"]


def test_retries_stop_at_the_deadline(standin: MailgunStandIn) -> None:
    standin.fail_next(50, status=429, retry_after="0.3")
    with MailgunClient(standin.url, SecretStr(ACCOUNT_KEY), deadline=1.0) as client:
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable, match="deadline"):
            client.credentials("mg.example.com")
    assert time.monotonic() - started < 2.0


def test_a_wrong_account_key_is_an_auth_error_that_never_shows_a_key(standin: MailgunStandIn) -> None:
    wrong = "key-wrongwrongwrong0001"
    with MailgunClient(standin.url, SecretStr(wrong)) as client, pytest.raises(AuthError) as raised:
        client.credentials("mg.example.com")
    assert wrong not in str(raised.value) and ACCOUNT_KEY not in str(raised.value)
    assert "401" in str(raised.value)


def test_changing_the_password_of_an_unknown_login_is_not_found(client: MailgunClient) -> None:
    with pytest.raises(NotFound, match="Credentials not found"):
        client.set_password("mg.example.com", "ghost@mg.example.com", KEY_A)


def test_an_unknown_domain_is_not_found(client: MailgunClient) -> None:
    with pytest.raises(NotFound, match="Domain not found"):
        client.credentials("nowhere.example.com")


def test_plain_http_is_refused_unless_loopback() -> None:
    with pytest.raises(ConfigError, match="loopback"):
        MailgunClient("http://api.mailgun.example/", SecretStr(ACCOUNT_KEY))


def test_lock_is_refused_without_lock_by_delete(backend: MailgunBackend) -> None:
    backend.users.create("app@mg.example.com", {}, KEY_A, {})
    with pytest.raises(ServiceError, match="mailgun_lock_by_delete"):
        backend.users.lock("app@mg.example.com")


def test_lock_by_delete_deletes_and_unlock_recreates_with_the_declared_key(
    client: MailgunClient, standin: MailgunStandIn
) -> None:
    backend = MailgunBackend(client, DOMAINS, lock_by_delete=True)
    assert "locked" in backend.capabilities.fields
    backend.users.create("app@mg.example.com", {}, KEY_A, {})
    assert backend.users.lock("app@mg.example.com").locked
    assert standin.logins() == []
    backend.users.set_key("app@mg.example.com", KEY_B, changes={"locked": False})
    assert standin.authenticate("app@mg.example.com", KEY_B.reveal()) == "app@mg.example.com"


def test_capabilities_store_nothing_but_the_pair() -> None:
    caps = CAPABILITIES.to_json()
    assert caps["fields"] == [] and caps["annotations"] is False and caps["key_reuse_refused"] is True
    assert caps["fixed"]["access.smtp"] is True and caps["fixed"]["access.http_api"] is False
    assert caps["locks"] is False and caps["can_list"] is True and caps["leases"] is False


def test_the_factory_reads_the_account_key_from_the_named_variable(
    standin: MailgunStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reconciler.backend.registry import open_backend

    monkeypatch.setenv("MG_TEST_KEY", ACCOUNT_KEY)
    settings = Settings(
        backend="mailgun",
        mailgun_api_url=standin.url,
        mailgun_api_key_env="MG_TEST_KEY",
        mailgun_domains=" MG.example.com , eu.example.org",
    )
    opened = open_backend(settings)
    try:
        assert opened.users.list() == []
        assert ACCOUNT_KEY not in repr(opened)
    finally:
        opened.close()
    monkeypatch.delenv("MG_TEST_KEY")
    with pytest.raises(ConfigError, match=r"\$MG_TEST_KEY"):
        open_backend(settings)


def test_a_login_outside_the_sending_domains_is_refused_at_its_api_user_line(tmp_path: Path) -> None:
    from reconciler.backend.mailgun import FACTORY
    from reconciler.desired import load_users

    users = tmp_path / "users"
    users.mkdir()
    for login in ("app@mg.example.com", "app@other.example.net"):
        (users / f"{login}.yaml").write_text(
            f"# a comment\napi_user: {login}\napi_key: {{from_env: K}}\nrole: normal\n"
        )
    settings = Settings(backend="mailgun", mailgun_domains=",".join(DOMAINS))
    problems = FACTORY.declared_problems(load_users(users), settings)
    assert [str(p) for p in problems] == [
        f"{users}/app@other.example.net.yaml:2: api_user: other.example.net is not a configured Mailgun "
        "sending domain (mg.example.com, eu.example.org)"
    ]


@pytest.mark.parametrize("write", ["create", "set_key", "delete"])
def test_a_write_whose_answer_was_lost_is_applied_once(
    backend: MailgunBackend, standin: MailgunStandIn, write: str
) -> None:
    login = "app@mg.example.com"
    if write != "create":
        backend.users.create(login, {}, KEY_A, {})
    standin.lose_next_answer(login)
    posts, puts = standin.count("POST"), standin.count("PUT")
    if write == "create":
        backend.users.create(login, {}, KEY_A, {})
        assert (standin.count("POST") - posts, standin.logins()) == (1, [login])
    elif write == "set_key":
        backend.users.set_key(login, KEY_B)  # the retry is refused as the same password: applied
        assert standin.count("PUT") - puts == 2
        assert standin.authenticate(login, KEY_B.reveal()) == login
    else:
        backend.users.delete(login)  # the retry finds it gone: success
        assert standin.logins() == []


def test_a_sending_domain_that_is_no_domain_name_is_a_config_error(client: MailgunClient) -> None:
    with pytest.raises(ConfigError, match=r"not a domain name: 'mg/\.\./x'"):
        MailgunBackend(client, ("mg.example.com", "mg/../x"))


def test_the_account_key_may_come_from_a_file(standin: MailgunStandIn, tmp_path: Path) -> None:
    from reconciler.backend.mailgun.backend import account_key

    key_file = tmp_path / "mailgun.key"
    key_file.write_text(ACCOUNT_KEY + "\n")
    settings = Settings(backend="mailgun", mailgun_api_key_file=str(key_file), mailgun_api_key_env="UNSET")
    assert account_key(settings, {}).get_secret_value() == ACCOUNT_KEY
    key_file.write_text("two\nlines\n")
    with pytest.raises(ConfigError) as raised:
        account_key(settings, {})
    assert "does not hold a Mailgun key" in str(raised.value) and "lines" not in str(raised.value)


def test_error_messages_are_truncated_and_never_show_the_account_key_or_the_password() -> None:
    import requests

    client = MailgunClient("https://api.mailgun.net", SecretStr(ACCOUNT_KEY))
    answer = requests.Response()
    answer.status_code = 400
    # The account key straddles the 200-character cut: masking after cutting would leave its prefix.
    message = "bad " + KEY_A.reveal() + " " + "x" * 170 + ACCOUNT_KEY + " " + "y" * 300
    answer._content = ('{"message": "' + message + '"}').encode()
    with pytest.raises(ServiceError) as raised:
        client._raise_for(answer, "PUT", "credential app@mg.example.com", KEY_A)
    shown = str(raised.value)
    assert ACCOUNT_KEY[:12] not in shown and KEY_A.reveal() not in shown and "***" in shown
    assert len(shown) < 300 and shown.endswith("...")
    client.close()
