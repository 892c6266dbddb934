"""`make demo BACKEND=cmc-console`: the Customers Mail Cloud story against the stand-in (docs/cmc.md).

users/ -> the plan as the console's checklist -> apply without a terminal waits for a person (exit 4)
-> the console driver does the steps, as a person would -> `reconciler verify` confirms and records
-> someone changes a user in the console -> the next plan shows it, with its author.
"""

from __future__ import annotations

import os
import secrets
import string
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler_service.standins.cmc import StandIn

ADMIN = "admin@example.com"
USERS = {
    "billing@example.com": "role: normal\naccess:\n  http_api: true\n  smtp: true\n",
    "reports@example.com": "role: normal\noperation: true\naccess:\n  http_api: true\n  smtp: false\n",
}


def key() -> str:
    return "d3" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(22))


def env_var(api_user: str) -> str:
    return api_user.split("@", 1)[0].upper() + "_API_KEY"


def run(env: dict[str, str], cwd: Path, *args: str) -> int:
    print(f"\n$ reconciler {' '.join(args)}", flush=True)
    done = subprocess.run([sys.executable, "-m", "reconciler", *args], cwd=cwd, env=env, check=False)
    print(f"(exit {done.returncode})", flush=True)
    return done.returncode


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="reconciler-cmc-demo-") as tmp, StandIn() as standin:
        root = Path(tmp)
        (root / "users").mkdir()
        admin_key = key()
        standin.driver.add(ADMIN, admin_key, role="admin", smtp=False)
        keys = {env_var(u): key() for u in USERS}
        for api_user, body in USERS.items():
            ref = f"api_key:\n  from_env: {env_var(api_user)}\n"
            (root / "users" / f"{api_user}.yaml").write_text(f"api_user: {api_user}\n{ref}{body}")
        env = {**os.environ, **standin.env(ADMIN), **keys, "RECONCILER_API_KEY": admin_key}
        env |= {"RECONCILER_CMC_AUDIT_INTERVAL_HOURS": "0", "RECONCILER_CMC_PROBE_RATE": "20"}
        env["RECONCILER_FINGERPRINT_SECRET"] = secrets.token_hex(32)  # independent of every key
        env.pop("GITHUB_STEP_SUMMARY", None)

        run(env, root, "plan", "--format", "markdown")
        assert run(env, root, "apply") == 4, "without a terminal, apply waits for a person"
        for api_user, body in USERS.items():
            print(f"console driver: add {api_user} (the steps above)")
            standin.driver.add(api_user, keys[env_var(api_user)], smtp="smtp: true" in body)
        assert run(env, root, "verify") == 0

        print("\nA minute later someone locks reports@example.com in the console ...")
        standin.account.clock = lambda: datetime.now(UTC) + timedelta(minutes=1)
        standin.driver.console_account = "someone@example.com"
        standin.driver.lock("reports@example.com")
        run(env, root, "plan")
        print("console driver: unlock reports@example.com (the step above)")
        standin.driver.unlock("reports@example.com")
        assert run(env, root, "verify", "--target", "reports@example.com") == 0
        print(f"\nFailed authentications the stand-in counted: {standin.account.failed_logins()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
