"""The shell examples of the documentation, found where a reader finds them: the `Example:` block of
every `--help`, the ```sh blocks of README.md and docs/, and the example column of the README's
command table. Tests run them (tests/docs/test_examples.py, tests/test_newcomer.py), so an example
that drifts from the tool fails the build.

Some cannot run on a fresh machine (they need GitHub, another service, the network, a person); each
is listed in NOT_RUN with the reason. Others run with a documented substitution (SUBSTITUTIONS): a
system path becomes one in the sandbox, a placeholder recipient a real one.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click

from reconciler.cli import group

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))


@dataclass(frozen=True)
class Example:
    where: str  # "reconciler plan --help" or "docs/runbook.md:5"
    command: str


def _commands(
    command: click.Command, path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _commands(sub, (*path, name))


def help_examples() -> list[Example]:
    """Each line of the `Example:` block of each command's help, in the order shown."""
    found = []
    for path, command in _commands(group, ("reconciler",)):
        text = command.help or ""
        block = re.search(r"^\s*Examples?:\n((?:[ \t]+\S.*\n?)+)", text, re.M)
        if block is None:
            continue
        for _, line in _commands_of(block[1], 1):
            found.append(Example(" ".join(path) + " --help", line))
    return found


def markdown_examples(path: Path) -> list[Example]:
    """Each command of each ```sh block (continuation lines joined), and for README.md the example
    column of its command table."""
    text = path.read_text()
    name = path.relative_to(ROOT).as_posix()
    found = []
    for block in re.finditer(r"^```sh\n(.*?)^```$", text, re.M | re.S):
        if block[1].startswith("# recipe:"):
            continue  # a whole recipe, run as one script by its own test (tests/mail/test_recipe.py)
        first = text.count("\n", 0, block.start(1)) + 1
        for number, line in _commands_of(block[1], first):
            found.append(Example(f"{name}:{number}", line))
    if path.name == "README.md":
        for number, line in enumerate(text.splitlines(), 1):
            cells = line.split(" | ")
            if line.startswith("| `") and len(cells) >= 3:
                shell = [c for c in re.findall(r"`([^`]+)`", cells[-1]) if "reconciler " in c]
                found += [Example(f"{name}:{number}", c) for c in shell]
    return found


def _commands_of(block: str, first: int) -> Iterator[tuple[int, str]]:
    pending, start = "", first
    for number, line in enumerate(block.splitlines(), first):
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        command = (pending + line.strip()).strip()
        pending = ""
        if command and not command.startswith("#"):
            yield start, command


def all_examples() -> list[Example]:
    return help_examples() + [e for doc in DOCS for e in markdown_examples(doc)]


# --- running them ----------------------------------------------------------------------------------

# Examples no test can run on a fresh machine, and why. Everything else runs.
NOT_RUN: dict[str, str] = {
    "make demo": "run as a newcomer would, from a fresh clone, by tests/test_newcomer.py",
    "make test": "the test suite itself",
    "make setup": "builds the venv this test runs in",
    "make shell": "the examples run in the environment it opens (tests/test_newcomer.py runs them in it)",
    "exit": "leaves `make shell`",
    "pip install --require-hashes -r requirements/action.txt": "needs the network (PyPI)",
    "pip install --no-deps --no-build-isolation .": "installs into the interpreter running the tests",
    "pass show mail/billing": "a person's password store",
    'eval "$(reconciler completion zsh)"': "zsh is not installed on the test machines",
    "export RECONCILER_API_URL=https://mail.example.com/api/v2": "points at your production service",
    "read -rs RECONCILER_API_KEY": "a person types the key",
    "cd users-repo && git pull": "your users repository's clone and its remote",
    ".venv/bin/pytest": "the test suite itself",
    "RECONCILER_LIVE_TESTS=1": "the opt-in live tests need a real account and the network",
    "gh secret set": "needs the GitHub CLI and a repository's settings",
    # verify confirms a console backend's account; tests/cmc runs it against the stand-in.
    "reconciler verify": "needs the cmc-console backend and its account (tests/cmc runs it on the stand-in)",
    # curl exits 0 on a 4xx: run here it would pass whatever the service said.
    'curl -u "$ADMIN:$ADMIN_KEY"': "binds a gateway user (gateway-mx1@example.com) the demo's users/ lacks",
}

# (text in an example, what the test runs instead, why)
SUBSTITUTIONS: tuple[tuple[str, str, str], ...] = (
    ("/etc/reconciler/mail", "$PWD/mail", "a system directory: a fresh machine has none"),
    ("/etc/bash_completion.d/reconciler", "$PWD/reconciler.completion", "a system directory"),
    ("path/to/users", "users", "a placeholder"),
    (
        "RECONCILER_SERVICE_ADMIN_KEY=...",
        'RECONCILER_SERVICE_ADMIN_KEY="$RECONCILER_API_KEY"',
        "a placeholder",
    ),
    ("--smtp-port 2525", "--smtp-port $FREE_SMTP_PORT --port $FREE_PORT", "ports are shared by every test"),
    ("age1ci...", "$RECIPIENT", "a placeholder recipient; the sandbox made a real one"),
    ("age1oncall...", "$RECIPIENT", "a placeholder recipient"),
    ("age1alice...", "$RECIPIENT", "a placeholder recipient"),
    ("age1...", "$RECIPIENT", "a placeholder recipient"),
)

# A long-running command: started, must say it listens, then stopped.
SERVICE_RUN = re.compile(r"\bservice run\b")

# What a few examples need from before them (a saved plan), with the command that makes it.
SAVED_PLAN = "test -f plan.json || reconciler plan --out plan.json > /dev/null"
SETUP: dict[str, str] = {
    "reconciler apply plan.json --format json": "reconciler plan --out plan.json > /dev/null",
    "reconciler show plan.json --format markdown": SAVED_PLAN,
    "reconciler apply plan.json": SAVED_PLAN,
}


def not_run(example: Example) -> str | None:
    if re.search(r"\s\[--", example.command):
        return "a usage synopsis ([--optional] parts), not an example"
    return next((why for start, why in NOT_RUN.items() if example.command.startswith(start)), None)


def prepared(example: Example) -> str:
    command = example.command
    for text, instead, _ in SUBSTITUTIONS:
        command = command.replace(text, instead)
    setup = SETUP.get(example.command)
    if SERVICE_RUN.search(command):
        # It runs until stopped: 5 s to say it listens; `timeout` exits 124 when it had to stop it.
        command = f"timeout -s INT 5 bash -c {shlex.quote(command)}; [ $? = 124 ]"
    return f"{setup} && {command}" if setup else command
