"""Every setting is documented, and the compose file is valid and uses real settings."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from shared.settings import KontaktSettings

ROOT = Path(__file__).resolve().parents[2]


def setting_names() -> set[str]:
    return {f"KONTAKT_{name.upper()}" for name in KontaktSettings.model_fields}


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"KONTAKT_[A-Z0-9_]+", readme))
    # Table rows may abbreviate a family: `KONTAKT_PG_HOST`, `_PG_PORT`, ...
    abbreviated = {f"KONTAKT{m}" for m in re.findall(r"`(_[A-Z0-9_]+)`", readme)}
    missing = setting_names() - documented - abbreviated
    assert not missing, f"settings missing from the README's Configuration: {sorted(missing)}"


def test_compose_file_uses_only_real_settings() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"^\s+(KONTAKT_[A-Z0-9_]+):", text, re.M))
    unknown = used - setting_names()
    assert used and not unknown, f"compose sets unknown settings: {sorted(unknown)}"


def test_compose_config_accepts_the_file() -> None:
    env = {**os.environ, "KONTAKT_JWT_SECRET": "x" * 32, "KONTAKT_KEY_SECRET": "y" * 32,
           "KONTAKT_MASTER_KEY": "eg==" * 8}  # fmt: skip
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        command = ["docker", "compose", "config", "-q"]
    else:
        # The compose v1 client checks the file against its (older, stricter) schema.
        assert shutil.which("docker-compose"), "neither `docker compose` nor docker-compose found"
        command = ["docker-compose", "config", "-q"]
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
