"""`secret keygen` and `secret generate`: the two secrets a newcomer otherwise makes by hand (an age
identity, without installing age; an API key that meets the service's rule). Subcommands of
`reconciler secret` (cli/ops.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from reconciler import newkeys
from reconciler.cli.options import note
from reconciler.errors import ExitCode, ReconcilerError

out_option = click.option(
    "--out",
    "-o",
    "out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write it to this new file (mode 0600).",
)
force_option = click.option("--force", is_flag=True, help="Overwrite the file if it exists.")


@click.command("keygen")
@click.option(
    "--out",
    "-o",
    "out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The identity file to write (mode 0600); keep it secret.",
)
@force_option
def keygen(out: Path, force: bool) -> int:
    """Make an age identity (what age-keygen makes) and print its public key, the recipient.

    The identity decrypts: give its file to RECONCILER_AGE_IDENTITY_FILE, or its last line to
    RECONCILER_AGE_IDENTITY (a CI secret). The recipient printed on stdout encrypts:
    `reconciler secret encrypt -r <recipient>`.

    \b
    Example:
      reconciler secret keygen -o ci.agekey
      reconciler secret keygen -o me.agekey > me.recipient && cat me.recipient
    """
    text, recipient = newkeys.generate_age_identity()
    newkeys.write_private(out, text, force=force)
    note(f"Wrote the age identity to {out} (mode 0600); its public key (the recipient):")
    click.echo(recipient)
    return ExitCode.OK


@click.command("generate")
@out_option
@click.option("--stdout", "to_stdout", is_flag=True, help="Print the key even when stdout is a pipe.")
@click.option(
    "--length",
    type=click.IntRange(min=16, max=128),
    default=newkeys.DEFAULT_LENGTH,
    show_default=True,
    help="Characters in the key.",
)
@force_option
def generate(out: Path | None, to_stdout: bool, length: int, force: bool) -> int:
    """Make a new API key that meets the service's key rule (letters and digits, at least one of each).

    Written to --out (a new file, mode 0600) or shown on a terminal; never to a pipe or a file
    unless --stdout says so, since a key piped away by mistake ends up in logs. Use it for a new
    user or a rotation, then point the user's api_key at it (from_file, a secret, or age).

    \b
    Example:
      reconciler secret generate -o secrets/billing.key
      reconciler secret generate --stdout | reconciler secret encrypt -r "$(reconciler secret keygen -o k)"
    """
    key = newkeys.generate_api_key(length)
    if out is not None:
        newkeys.write_private(out, key.reveal() + "\n", force=force)
        note(f"Wrote a new API key to {out} (mode 0600); a user's file reads it with")
        note(f"  api_key: {{from_file: {out}}}")
        return ExitCode.OK
    if not (to_stdout or sys.stdout.isatty()):
        raise ReconcilerError(
            "refusing to write a new key to a pipe or file: stdout is not a terminal. "
            "Use --out FILE (mode 0600), or --stdout to pipe it on purpose"
        )
    click.echo(key.reveal())
    return ExitCode.OK
