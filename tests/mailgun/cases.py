"""What every Mailgun credential backend must do, stand-in or live API: one class, inherited by
test_backend.py (the stand-in) and test_live.py (the real API, opt-in). Fixtures: `backend`,
`new_login` (an unused login at a configured domain), `domain`."""

from __future__ import annotations

import pytest

from reconciler.backend.mailgun import MailgunBackend
from reconciler.errors import ConfigError, SecretError, ServiceError
from reconciler.secrets import ApiKey

KEY_A, KEY_B = ApiKey("FirstKey0001"), ApiKey("SecondKey0002")


class CredentialCases:
    def test_a_created_credential_is_listed_as_an_smtp_login(
        self, backend: MailgunBackend, new_login: str
    ) -> None:
        try:
            backend.users.create(new_login, {}, KEY_A, {})
            listed = {u.api_user.lower(): u for u in backend.users.list()}
            assert new_login.lower() in listed
            assert listed[new_login.lower()].access.smtp and not listed[new_login.lower()].locked
            got = backend.users.get(new_login)
            assert got is not None and got.api_user.lower() == new_login.lower()
        finally:
            backend.users.delete(new_login)

    def test_creating_an_existing_credential_again_is_not_an_error(
        self, backend: MailgunBackend, new_login: str
    ) -> None:
        try:
            backend.users.create(new_login, {}, KEY_A, {})
            backend.users.create(new_login, {}, KEY_A, {})  # a retry after a lost answer
            assert [u.api_user for u in backend.users.list()].count(new_login) == 1
        finally:
            backend.users.delete(new_login)

    def test_setting_the_key_in_place_twice_counts_as_applied(
        self, backend: MailgunBackend, new_login: str
    ) -> None:
        try:
            backend.users.create(new_login, {}, KEY_A, {})
            backend.users.set_key(new_login, KEY_B)
            backend.users.set_key(new_login, KEY_B)  # Mailgun refuses the same password: in place
        finally:
            backend.users.delete(new_login)

    def test_deleting_a_credential_already_gone_is_success(
        self, backend: MailgunBackend, new_login: str
    ) -> None:
        backend.users.create(new_login, {}, KEY_A, {})
        backend.users.delete(new_login)
        backend.users.delete(new_login)
        assert backend.users.get(new_login) is None

    def test_an_unknown_login_reads_as_absent(self, backend: MailgunBackend, new_login: str) -> None:
        assert backend.users.get(new_login) is None

    def test_a_login_outside_the_sending_domains_is_refused_before_any_request(
        self, backend: MailgunBackend
    ) -> None:
        with pytest.raises(ConfigError, match="not a configured Mailgun sending domain"):
            backend.users.create("app@elsewhere.example.net", {}, KEY_A, {})

    def test_a_key_longer_than_mailgun_allows_is_refused_without_showing_it(
        self, backend: MailgunBackend, new_login: str
    ) -> None:
        long_key = "Ab1" * 11  # 33 characters: the project's rule allows it, Mailgun's does not
        with pytest.raises(SecretError) as raised:
            backend.users.create(new_login, {}, ApiKey(long_key), {})
        assert long_key not in str(raised.value)
        assert backend.users.get(new_login) is None

    def test_fields_mailgun_cannot_store_are_left_out_but_a_lock_is_refused(
        self, backend: MailgunBackend, new_login: str
    ) -> None:
        try:
            made = backend.users.create(new_login, {"role": "normal", "description": "x"}, KEY_A, {})
            assert made.api_user == new_login and made.description is None
            if not backend.capabilities.locks:
                with pytest.raises(ServiceError, match="mailgun_lock_by_delete"):
                    backend.users.update(new_login, {"locked": True})
                assert backend.users.get(new_login) is not None
        finally:
            backend.users.delete(new_login)
