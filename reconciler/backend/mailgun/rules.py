"""What a users/ repository for Mailgun must hold, checked before anything is sent. Pure.

- Each login's domain (the part after `@`) is its sending domain, and must be one of the configured
  ones (RECONCILER_MAILGUN_DOMAINS): the folder layout stays the project's `users/<login>.yaml`.
- A key must fit both rules: the project's (8-128 of [A-Za-z0-9], a letter and a digit) and
  Mailgun's (5-32 characters), so 8-32.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from reconciler.config import Settings, mailgun_domains
from reconciler.desired import DesiredState
from reconciler.errors import Problem
from reconciler.secrets import ApiKey

MAX_PASSWORD = 32  # Mailgun's upper bound; its lower bound (5) is below the project's 8
KEY_LENGTH_RULE = f"Mailgun passwords are at most {MAX_PASSWORD} characters"


def domain_of(login: str) -> str:
    return login.rpartition("@")[2].lower()


def domain_problems(
    logins: Iterable[str], domains: tuple[str, ...], files: Mapping[str, str], lines: Mapping[str, int | None]
) -> list[Problem]:
    """One problem (file:line of `api_user`) per login whose domain is not a configured sending domain."""
    problems = []
    allowed = ", ".join(domains) or "none: set RECONCILER_MAILGUN_DOMAINS"
    for login in logins:
        if domain_of(login) not in domains:
            message = f"{domain_of(login)} is not a configured Mailgun sending domain ({allowed})"
            problems.append(Problem(files.get(login, login), message, lines.get(login), None, "api_user"))
    return problems


def desired_problems(desired: DesiredState, settings: Settings) -> list[Problem]:
    """What the backend refuses in users/ before anything is sent: logins outside the sending
    domains, each at its file's `api_user` line."""
    logins = [u.api_user for u in desired.users]
    files = {login: str(desired.files.get(login, login)) for login in logins}
    lines = {login: desired.line(login, "api_user") for login in logins}
    return domain_problems(logins, mailgun_domains(settings), files, lines)


def key_problem(api_user: str, key: ApiKey) -> str | None:
    """Why Mailgun would refuse this key, never the key itself."""
    if len(key.reveal()) > MAX_PASSWORD:
        return f"the key of {api_user} is too long for Mailgun: {KEY_LENGTH_RULE}"
    return None
