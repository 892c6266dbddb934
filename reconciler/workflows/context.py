"""The `Run`: everything one command works with, built once (`open_run`) and handed to the
workflows: settings, the users snapshot and its keys (`KeyCache`), the fingerprint secret, the
backend (opened on first use through the registry, closed with the run), the state store slot,
the run's identity and the `Reporter` the CLI implements.

Workflows never print or prompt: they tell the reporter what happened and ask it for
confirmation, so every decision stays testable without a terminal.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol

from reconciler.backend.base import Backend, RunIdentity, StateStore
from reconciler.backend.registry import factory, open_backend
from reconciler.backend.stateful import with_state
from reconciler.config import Settings, load_settings
from reconciler.desired import DesiredState, load_users, required_fields
from reconciler.errors import Problem, UnsafePlan
from reconciler.run.identity import run_identity
from reconciler.run.store import open_store
from reconciler.secrets import ApiKey, ResolvedKeys
from reconciler.workflows import keys as keyring

if TYPE_CHECKING:
    from reconciler.executor import Outcome
    from reconciler.mail import MailReport
    from reconciler.plan import Plan


class Reporter(Protocol):
    """What a workflow tells the person or pipeline running it. Implemented by the CLI."""

    def warning(self, message: str) -> None: ...

    def info(self, message: str) -> None: ...

    def confirm(self, plan: Plan, *, ask: bool) -> bool:
        """Show the plan and, when `ask`, ask the person at the terminal; True to go ahead."""
        ...

    def progress(self, total: int) -> contextlib.AbstractContextManager[Callable[[Outcome], None]]:
        """A callback for each outcome as it completes (a progress bar on a terminal)."""
        ...

    def outcomes(self, outcomes: list[Outcome]) -> None: ...

    def pending(self, plan: Plan) -> None:
        """Changes still pending after apply (the service ignored or undid some)."""
        ...

    def mail(self, report: MailReport | None) -> None:
        """The mail step's result; None when no mail directory is configured."""
        ...


class SilentReporter:
    """A Reporter that tells nobody anything and approves only what needs no question: the base
    of reporters that care about a few events (render's warnings, tests)."""

    def warning(self, message: str) -> None:
        pass

    def info(self, message: str) -> None:
        pass

    def confirm(self, plan: Plan, *, ask: bool) -> bool:
        return not ask

    @contextlib.contextmanager
    def progress(self, total: int) -> Iterator[Callable[[Outcome], None]]:
        yield lambda _outcome: None

    def outcomes(self, outcomes: list[Outcome]) -> None:
        pass

    def pending(self, plan: Plan) -> None:
        pass

    def mail(self, report: MailReport | None) -> None:
        pass


class KeyCache:
    """The run's keys: each declared key is resolved at most once, whoever asks (the plan, the
    check of the reconciler's own key, the mail step). An age decryption is slow, and a key file
    replaced mid-run must not give the service one key and the gateway another."""

    def __init__(self, desired: DesiredState, settings: Settings) -> None:
        self._desired = desired
        self._settings = settings
        self._user_of = {str(path): name.lower() for name, path in desired.files.items()}
        self._keys: dict[str, ApiKey] = {}
        self._seen: set[str] = set()
        self._problems: dict[str, tuple[list[Problem], list[Problem]]] = {}  # name -> missing, unusable

    def resolve(self, names: Iterable[str] | None = None) -> ResolvedKeys:
        """The keys of `names` (any case; None = every declared user). Warnings (loose key file
        modes) come only with the first resolution of a user, so each is reported once."""
        wanted = (
            {u.api_user.lower() for u in self._desired.users} if names is None else {n.lower() for n in names}
        )
        fresh = keyring.resolve_keys(self._desired, sorted(wanted - self._seen), settings=self._settings)
        self._remember(fresh)
        self._seen |= wanted
        keys = {name: key for name, key in self._keys.items() if name.lower() in wanted}
        missing = [p for n in sorted(wanted) for p in self._problems.get(n, ([], []))[0]]
        unusable = [p for n in sorted(wanted) for p in self._problems.get(n, ([], []))[1]]
        return ResolvedKeys(MappingProxyType(keys), tuple(missing), fresh.warnings, tuple(unusable))

    def _remember(self, fresh: ResolvedKeys) -> None:
        self._keys.update(fresh.keys)
        for problem in fresh.missing:
            name = self._user_of.get(problem.file, Path(problem.file).stem.lower())
            missing, unusable = self._problems.setdefault(name, ([], []))
            missing.append(problem)
            if problem in fresh.unusable:
                unusable.append(problem)


class Run:
    """One command's context. The users snapshot, the keys, the secret, the identity and the
    backend are each made at most once, when first needed: `status` still reports the service
    when users/ is invalid, and `validate` never opens a backend."""

    def __init__(
        self,
        settings: Settings,
        users_dir: Path,
        reporter: Reporter,
        *,
        store: StateStore | None = None,
        backend_opener: Callable[[Settings], Backend] = open_backend,
    ) -> None:
        self.settings = settings
        self.users_dir = users_dir
        self.reporter = reporter
        self.store = store  # the state store (reconciler/run/store.py) of a backend without annotations
        self._open = backend_opener
        self._backend: Backend | None = None
        # Where the names of the live users come from when the backend cannot list them (a
        # console backend sets it); None: the declared users and the state store's.
        self.live_names: Callable[[Run], Iterable[str]] | None = None

    @property
    def state_dir(self) -> Path:
        return self.users_dir.parent / self.settings.state_dir

    @cached_property
    def desired(self) -> DesiredState:
        return load_users_for(self.users_dir, self.settings)

    @cached_property
    def keys(self) -> KeyCache:
        return KeyCache(self.desired, self.settings)

    @cached_property
    def fingerprint_secret(self) -> bytes | None:
        return keyring.key_fingerprint_secret(self.settings)

    @cached_property
    def identity(self) -> RunIdentity:
        return run_identity(self.users_dir)

    @property
    def backend(self) -> Backend:
        """Opened on first use; a failure to open is not remembered (each part of `status`
        reports it)."""
        if self._backend is None:
            opened = self._open(self.settings)
            # Without annotations, what the reconciler records lives in the state store.
            if not opened.capabilities.annotations:
                self.store = self.store or open_store(self.settings, self.users_dir)
                opened = with_state(opened, self.store)
            self._backend = opened
        return self._backend

    def identified_backend(self) -> Backend:
        """The backend, recording this run's identity with every later write."""
        backend = self.backend
        backend.identify(self.identity)
        return backend

    def with_mail_dir(self, mail_dir: Path | None) -> Run:
        """`--mail-dir` is the mail_dir setting for this run, exactly as RECONCILER_MAIL_DIR."""
        if mail_dir is not None:
            self.settings = self.settings.model_copy(update={"mail_dir": str(mail_dir)})
        return self

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


@contextlib.contextmanager
def open_run(
    users_dir: Path,
    reporter: Reporter,
    *,
    mail_dir: Path | None = None,
    store: StateStore | None = None,
    backend_opener: Callable[[Settings], Backend] = open_backend,
    load_users_now: bool = False,
) -> Iterator[Run]:
    """The run of one command: settings read once, the backend closed at the end. With
    `load_users_now` (plan, apply, reconcile) a missing users/ is refused and users/ is read
    before anything else, so a broken file fails the command before the service is asked."""
    if load_users_now:
        refuse_missing_users_dir(users_dir)
    run = Run(load_settings(users_dir), users_dir, reporter, store=store, backend_opener=backend_opener)
    run.with_mail_dir(mail_dir)
    if load_users_now:
        run.desired  # noqa: B018 - read now, see above
    try:
        yield run
    finally:
        run.close()


def load_users_for(users_dir: Path, settings: Settings) -> DesiredState:
    """users/ as the configured backend needs it: `role` is required when the backend stores it
    (its declared capabilities, read without connecting)."""
    return load_users(users_dir, required=required_fields(factory(settings.backend).capabilities.fields))


def load_users_checked(users_dir: Path) -> DesiredState:
    """`validate`: users/ with the settings beside it (reconciler.yaml, the environment)."""
    return load_users_for(users_dir, load_settings(users_dir))


def refuse_missing_users_dir(users_dir: Path) -> None:
    if not users_dir.is_dir():
        raise UnsafePlan(
            f"the users directory {users_dir} does not exist: refusing to treat it as 'no users' "
            "(which would delete everyone on the service). Run from the users repository or any "
            "directory below it (the nearest one upwards with reconciler.yaml or users/), or pass --users DIR"
        )
