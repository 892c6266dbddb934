"""The desired state: every `users/<api_user>.yaml`, validated, with file:line:column errors.

`load_users` is the one way the rest of the tool learns what people declared. It reports every
problem of a run at once (a reviewer fixes a pull request in one round), and refuses anything
that could make a file mean something other than what it looks like: aliases, merge keys, tags,
duplicate keys, stray files, symlinks.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import hashlib
import os
import pickle
import signal
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from reconciler.errors import Problem, SecretError, ValidationFailed
from reconciler.keyfiles import key_file_path, key_file_refusal
from reconciler.model import UserSpec
from reconciler.yamlfile import YamlMapping, load_mapping, type_name

SUFFIX = ".yaml"
PARALLEL_THRESHOLD = 2000  # files; measured with benchmarks/validate.py
PR_SET_PDEATHSIG = 1  # linux/prctl.h
# Custom model-level errors that are about one field: point at that field, not the whole mapping.
_ERROR_FIELD = {"own_data_only": "own_data_only", "smtp_senders": "smtp_senders"}
# Optional in the schema (Mailgun stores no role) but required by a backend that stores it: the
# default is what the default backend (http-v2) needs, so a run without settings still requires it.
REQUIRED_WHEN_STORED = frozenset({"role"})


def required_fields(stored: frozenset[str]) -> frozenset[str]:
    """The fields every file must declare for a backend that stores `stored` (its capabilities)."""
    return REQUIRED_WHEN_STORED & stored


@dataclass(frozen=True)
class DesiredState:
    """Every declared user, sorted by api_user (case-insensitively), and where each came from.

    `files` maps api_user -> its file; `lines` maps api_user -> {field path: line of its key}
    (field paths like `api_key`, `api_key.from_env`, `smtp_senders[0]`); `digest` is a sha256 over
    the sorted file names and contents, so a saved plan can tell that the desired state moved.
    """

    users: tuple[UserSpec, ...]
    files: Mapping[str, Path] = field(default_factory=lambda: MappingProxyType({}))
    lines: Mapping[str, Mapping[str, int]] = field(default_factory=lambda: MappingProxyType({}))
    digest: str = hashlib.sha256(b"").hexdigest()

    def line(self, api_user: str, field_path: str) -> int | None:
        """The line of `field_path` in the file of `api_user`, if it was written there."""
        return self.lines.get(api_user, {}).get(field_path)


@dataclass(frozen=True)
class _FileResult:
    """What one file contributed; produced per file so the work can be split across processes."""

    path: Path
    sha256: str
    user: UserSpec | None = None
    problems: tuple[Problem, ...] = ()
    lines: Mapping[str, int] = field(default_factory=dict)  # field path -> line
    data: dict[str, Any] | None = None  # the parsed file, when it parsed


def load_users(users_dir: Path, *, required: frozenset[str] = REQUIRED_WHEN_STORED) -> DesiredState:
    """Read and validate every user file. A missing or empty directory gives an empty state: the
    engine's safety guard, not this loader, decides that "no users" must not delete everyone.
    `required`: the optional fields the active backend needs declared (`required_fields`)."""
    if not users_dir.exists():
        return DesiredState(users=())
    with _gc_paused():
        paths, problems = scan_users_dir(users_dir)
        results = load_user_files(paths, required)
        problems += [p for r in results for p in r.problems]
        problems += cross_file_problems(results)
        problems += key_file_problems(results)
        if problems:
            raise ValidationFailed(sorted(problems, key=_reading_order))
        return _state(results)


def _reading_order(problem: Problem) -> tuple[str, int, int]:
    return (problem.file, problem.line or 0, problem.column or 0)


@contextmanager
def _gc_paused() -> Iterator[None]:
    # Loading allocates hundreds of thousands of small acyclic objects; the cyclic collector would
    # rescan them again and again for nothing (a third of the run time at 10,000 files).
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_mapping_with_lines(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """A YAML mapping file (reconciler.yaml) and the line of each top-level key, with the same
    refusals as user files."""
    doc, _ = load_mapping(path)
    lines = {key: pos.line for key, pos in doc.keys.items() if "." not in key and "[" not in key}
    return doc.data, lines


def scan_users_dir(users_dir: Path) -> tuple[list[Path], list[Problem]]:
    """The user files to read, and a problem for everything else in the directory."""
    try:
        entries = sorted(os.scandir(users_dir), key=lambda e: e.name)
    except OSError as exc:
        return [], [Problem(str(users_dir), f"cannot read the directory: {exc.strerror}")]
    paths: list[Path] = []
    problems: list[Problem] = []
    for entry in entries:
        if entry.name.startswith((".", "README")):
            continue  # editors' and git's dotfiles, and a README explaining the directory
        path = users_dir / entry.name
        refusal = _refuse_entry(entry)
        if refusal:
            # Line 1: a located problem is what a pull request shows on the file itself.
            problems.append(Problem(str(path), refusal, 1))
        else:
            paths.append(path)
    return paths, problems


def _refuse_entry(entry: os.DirEntry[str]) -> str | None:
    # Symlinks could point outside the repository, or make two names declare one user.
    if entry.is_symlink():
        return "symlinks are not allowed in the users directory; put the file itself here"
    if entry.is_dir():
        return "subdirectories are not read; move the files to the users directory itself"
    if not entry.name.endswith(SUFFIX):
        hint = " (rename it to .yaml)" if entry.name.lower().endswith((".yml", ".yaml")) else ""
        return f"only <api_user>.yaml files belong in the users directory{hint}"
    if not entry.is_file():
        return "not a regular file"
    return None


def load_user_files(paths: list[Path], required: frozenset[str] = REQUIRED_WHEN_STORED) -> list[_FileResult]:
    """Every file's result, in order. Parsing is CPU-bound Python, so with many files and a second
    core a forked child parses half of them; below the threshold the fork costs more than it saves."""
    if len(paths) < PARALLEL_THRESHOLD or not _can_fork():
        return [load_user_file(path, required) for path in paths]
    half = len(paths) // 2
    child = _Child.start(paths[half:], required)
    try:
        first = [load_user_file(path, required) for path in paths[:half]]
        second = child.results()
    finally:
        child.reap()
    if second is None:  # the child failed: do its half here rather than fail the run
        second = [load_user_file(path, required) for path in paths[half:]]
    return first + second


@dataclass
class _Child:
    """A forked child that loads some files and sends the results back through a pipe.

    It must not outlive its parent (a killed `reconciler` once left its loader blocked on a pipe
    forever): the kernel kills it when the parent dies (PR_SET_PDEATHSIG), and without that (not
    Linux) it holds no read end of its own pipe, so writing after the parent died fails at once.
    """

    pid: int
    read_fd: int
    done: bool = False

    @classmethod
    def start(cls, paths: list[Path], required: frozenset[str]) -> _Child:
        read_fd, write_fd = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, which leaves through os._exit
            os.close(read_fd)
            _child_main(paths, required, write_fd, parent)
        os.close(write_fd)
        return cls(pid, read_fd)

    def results(self) -> list[_FileResult] | None:
        with os.fdopen(self.read_fd, "rb") as pipe:
            data = pipe.read()
        self.done = True
        _, status = os.waitpid(self.pid, 0)
        if status != 0 or not data:
            return None
        return [_from_pickle(*wire) for wire in pickle.loads(data)]  # noqa: S301 - our own child

    def reap(self) -> None:
        """Kill and collect the child unless it finished (the parent is leaving on an error)."""
        if self.done:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        os.close(self.read_fd)


def _child_main(
    paths: list[Path], required: frozenset[str], write_fd: int, parent: int
) -> NoReturn:  # pragma: no cover
    code = 1
    try:
        _die_with_parent(parent)
        data = pickle.dumps(_load_chunk_for_pickle(paths, required), protocol=pickle.HIGHEST_PROTOCOL)
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(data)
        code = 0
    finally:
        os._exit(code)  # never run the parent's cleanup (atexit, finally blocks up the stack)


def _die_with_parent(parent: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)


# Pickling pydantic models costs more than validating them again, so a child sends plain data.
_Wire = tuple[str, str, dict[str, Any] | None, Mapping[str, int], tuple[Problem, ...]]


def _load_chunk_for_pickle(paths: list[Path], required: frozenset[str]) -> list[_Wire]:
    with _gc_paused():
        results = [load_user_file(path, required) for path in paths]
    return [(str(r.path), r.sha256, r.data if r.user else None, r.lines, r.problems) for r in results]


def _from_pickle(
    path: str, sha: str, data: dict[str, Any] | None, lines: Mapping[str, int], problems: tuple[Problem, ...]
) -> _FileResult:
    user = UserSpec.model_validate(data) if data is not None else None
    return _FileResult(Path(path), sha, user, problems, lines)


def _can_fork() -> bool:
    # Forking a process that runs other threads (an HTTP pool, say) can copy a held lock and
    # deadlock the child; such callers get the sequential path.
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return cpus >= 2 and threading.active_count() == 1 and hasattr(os, "fork")


def load_user_file(path: Path, required: frozenset[str] = REQUIRED_WHEN_STORED) -> _FileResult:
    """Parse and validate one file; every problem is located in it."""
    try:
        doc, raw = load_mapping(path)
    except ValidationFailed as exc:
        return _FileResult(path, _sha256_of(path), problems=tuple(exc.problems))
    sha = hashlib.sha256(raw).hexdigest()
    try:
        user = UserSpec.model_validate(doc.data)
    except ValidationError as exc:
        problems = [map_error(str(path), doc, err) for err in _without_echoes(exc.errors())]
        return _FileResult(path, sha, problems=tuple(problems), lines=doc.lines(), data=doc.data)
    problems = _missing(path, user, doc, required)
    mismatch = _name_mismatch(path, user, doc)
    problems += [mismatch] if mismatch else []
    return _FileResult(path, sha, user, tuple(problems), doc.lines(), doc.data)


def _missing(path: Path, user: UserSpec, doc: YamlMapping, required: frozenset[str]) -> list[Problem]:
    """A field the backend needs but the file leaves out, located where pydantic would put it."""
    line, column = doc.values.get("") or (None, None)
    return [
        Problem(str(path), "is required but missing", line, column, name)
        for name in sorted(required - user.model_fields_set)
    ]


def _without_echoes(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """Drop a list's "too short" that only echoes its own items' errors (pydantic counts the items
    that validated: one bad sender in a list of one reads as "list at least one sender")."""
    bad_items = {tuple(err["loc"][:-1]) for err in errors if err["loc"] and isinstance(err["loc"][-1], int)}
    return [err for err in errors if not (err["type"] == "too_short" and tuple(err["loc"]) in bad_items)]


def _sha256_of(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def _name_mismatch(path: Path, user: UserSpec, doc: YamlMapping) -> Problem | None:
    expected = path.name.removesuffix(SUFFIX)
    if user.api_user == expected:
        return None
    line, column = doc.position("api_user") or (None, None)
    message = f"must equal the file name without .yaml ({expected!r}); rename the file or fix api_user"
    return Problem(str(path), message, line, column, "api_user")


def map_error(file: str, doc: YamlMapping, err: ErrorDetails, model: type[BaseModel] = UserSpec) -> Problem:
    """A pydantic error as a located problem. Never uses `input`: it may be a literal key."""
    loc = tuple(err["loc"])
    if err["type"] in _ERROR_FIELD:
        loc = (*loc, _ERROR_FIELD[err["type"]])
    path = field_path(loc)
    if err["type"] == "missing":
        parent = field_path(loc[:-1])
        where = doc.position(parent, key=True) if parent else doc.values.get("")
        line, column = where or (None, None)
        return Problem(file, "is required but missing", line, column, path)
    at_key = err["type"] == "extra_forbidden"
    line, column = doc.position(path, key=at_key) or (None, None)
    return Problem(file, _message(err, loc, doc.data, model), line, column, path)


_MESSAGES = {
    "bool_type": "expected true or false, got {got}",
    "string_type": "expected a string, got {got}",
    "model_type": "expected a mapping, got {got}",
    "dict_type": "expected a mapping, got {got}",
    "model_attributes_type": "expected a mapping, got {got}",
    "tuple_type": "expected a list, got {got}",
    "list_type": "expected a list, got {got}",
    "literal_error": "expected {expected}",
}


def _message(
    err: ErrorDetails, loc: tuple[int | str, ...], data: dict[str, Any], model: type[BaseModel]
) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"unknown key; expected one of: {', '.join(_allowed_keys(model, loc[:-1]))}"
    if kind == "string_pattern_mismatch" and loc and loc[-1] == "from_env":
        return "expected an environment variable name like BILLING_API_KEY"
    if loc == ("smtp_senders",) and kind in ("too_short", "too_long"):
        if kind == "too_short":
            return "list at least one sender, or leave smtp_senders out for the default [api_user]"
        return f"list at most {err.get('ctx', {}).get('max_length', 100)} senders"
    if kind in _MESSAGES:
        expected = err.get("ctx", {}).get("expected", "one of the allowed values")
        got = _lookup(data, loc)
        message = _MESSAGES[kind].format(got=type_name(got), expected=expected)
        return message + _hint(kind, got, loc)
    return err["msg"]


def _hint(kind: str, got: Any, loc: tuple[int | str, ...]) -> str:
    """How to fix a wrong kind of value, when there is a simple way."""
    if kind != "string_type":
        return ""
    if got is None:
        # `timezone: ~` or an empty value: quoting would not help; a value or no key would.
        return f"; write a value, or leave {field_path(loc)} out" if loc else "; write a value"
    if isinstance(got, bool | int | float):
        return " (quote it)"
    return ""


def field_path(loc: Iterable[int | str]) -> str:
    """('smtp_senders', 1) -> 'smtp_senders[1]'; ('access', 'smtp') -> 'access.smtp'."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def _lookup(data: Any, loc: tuple[int | str, ...]) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _allowed_keys(model: type[BaseModel], parent: tuple[int | str, ...]) -> list[str]:
    """The keys the mapping at `parent` may have, found by walking the model's field types."""
    for part in parent:
        if isinstance(part, int):
            continue
        field_info = model.model_fields.get(part)
        nested = _model_in(field_info.annotation) if field_info else None
        if nested is None:
            break
        model = nested
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for m in map(_model_in, get_args(annotation)) if m is not None), None)


def cross_file_problems(results: list[_FileResult]) -> list[Problem]:
    """What no single file can know: the same api_user twice, the same sender claimed twice."""
    valid = [r for r in results if r.user is not None]
    return _duplicate_users(valid) + _duplicate_senders(valid)


def _duplicate_users(results: list[_FileResult]) -> list[Problem]:
    seen: dict[str, _FileResult] = {}
    problems = []
    for result in results:
        assert result.user is not None
        lowered = result.user.api_user.lower()
        if lowered in seen:
            other = seen[lowered].path
            message = f"the same api_user as {other} (api_users are compared case-insensitively)"
            problems.append(
                Problem(str(result.path), message, result.lines.get("api_user"), None, "api_user")
            )
        else:
            seen[lowered] = result
    return problems


def _duplicate_senders(results: list[_FileResult]) -> list[Problem]:
    # Postfix's sender_login_maps gives each sender one owner; a second claim would silently lose.
    owners: dict[str, tuple[_FileResult, int | None]] = {}
    problems = []
    for result in results:
        for sender, line in _claims(result):
            owner = owners.setdefault(sender.lower(), (result, line))
            if owner[0] is not result:
                where = f"{owner[0].path}:{owner[1]}" if owner[1] else str(owner[0].path)
                message = f"sender {sender} is also claimed by {where}"
                problems.append(Problem(str(result.path), message, line, None, "smtp_senders"))
    return problems


def _claims(result: _FileResult) -> list[tuple[str, int | None]]:
    """Senders a user's SMTP login would own, with the line that claims each."""
    user = result.user
    assert user is not None
    if not user.access.smtp:
        return []
    if user.smtp_senders is None:
        return [(user.api_user, result.lines.get("api_user"))]
    return [(s, result.lines.get(f"smtp_senders[{i}]")) for i, s in enumerate(user.smtp_senders)]


def key_file_problems(results: list[_FileResult]) -> list[Problem]:
    """`from_file` references to files that can never be a key: a FIFO, a device, a directory, a
    file too big. Only what is visible here is checked (a secret absent on a pull request is
    fine); `secrets.read_key_file` checks the opened file again when the key is read."""
    problems = []
    for result in results:
        user = result.user
        if user is None or user.api_key.from_file is None:
            continue
        try:
            path = key_file_path(user.api_key, result.path.parent)
        except SecretError as exc:  # `~name/...` for a user this machine lacks
            line = result.lines.get("api_key.from_file")
            problems.append(Problem(str(result.path), str(exc), line, None, "api_key.from_file"))
            continue
        try:
            refusal = key_file_refusal(os.stat(path))  # stat, unlike open, never blocks on a FIFO
        except ValueError:
            refusal = "is not a usable path (it contains a NUL character)"
        except OSError:
            continue
        if refusal is not None:
            line = result.lines.get("api_key.from_file")
            problems.append(Problem(str(result.path), f"{path} {refusal}", line, None, "api_key.from_file"))
    return problems


def _state(results: list[_FileResult]) -> DesiredState:
    users = sorted((r for r in results if r.user), key=lambda r: r.user.api_user.lower() if r.user else "")
    digest = hashlib.sha256()
    for result in sorted(results, key=lambda r: r.path.name):
        digest.update(f"{result.path.name}\0{result.sha256}\n".encode())
    return DesiredState(
        users=tuple(r.user for r in users if r.user),
        files=MappingProxyType({r.user.api_user: r.path for r in users if r.user}),
        lines=MappingProxyType({r.user.api_user: r.lines for r in users if r.user}),
        digest=digest.hexdigest(),
    )
