"""Print the pip settings the emulated root needs, read from the host at run time.

Output: ``NAME=value`` lines (one per line) for ``env`` inside the root. Only network
indexes are carried over; ``file://`` indexes and ``find-links`` directories live on the
host's disk and hold host-architecture wheels, so they are dropped. Nothing printed means
pip's default index, which is what a Raspberry Pi uses.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

_KEYS = {"index-url": "PIP_INDEX_URL", "extra-index-url": "PIP_EXTRA_INDEX_URL", "trusted-host": "PIP_TRUSTED_HOST"}


def _config_values() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    for line in out.splitlines():
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        if name in _KEYS:
            found.setdefault(name, []).extend(shlex.split(value))  # values are quoted by pip
    for name, env in _KEYS.items():
        if os.environ.get(env):
            found[name] = os.environ[env].split()  # the environment wins, as in pip
    return found


def main() -> int:
    values = _config_values()
    urls = {k: [u for u in v if u.startswith(("http://", "https://"))] for k, v in values.items()}
    if urls.get("index-url"):
        print(f"PIP_INDEX_URL={urls['index-url'][0]}")
    if urls.get("extra-index-url"):
        print(f"PIP_EXTRA_INDEX_URL={' '.join(urls['extra-index-url'])}")
    if values.get("trusted-host"):
        print(f"PIP_TRUSTED_HOST={' '.join(values['trusted-host'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
