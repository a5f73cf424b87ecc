"""Test helpers that put a Chromium profile directory into states the real world leaves it in.

Not a page thing (the simulator serves pages): a persistent profile copied or mounted from another host or
container keeps Chromium's process-singleton links, and Chromium then refuses to start with it ("The profile
appears to be in use by another Chromium process (12345) on another computer (otherhost)").
See whatsapp-web-dom.md §5, "Browser identity".
"""

from __future__ import annotations

import os
from pathlib import Path

SINGLETON_NAMES = ("SingletonLock", "SingletonCookie", "SingletonSocket")


def plant_foreign_singleton_lock(profile: Path, host: str = "otherhost", pid: int = 12345) -> Path:
    """Make ``profile`` look in use by Chromium process ``pid`` on another computer ``host``.

    Creates the three symlinks Chromium leaves in a user-data dir, as another host's would be:
    ``SingletonLock -> <host>-<pid>``, ``SingletonCookie -> <number>`` and
    ``SingletonSocket -> /tmp/.org.chromium.Chromium.<id>/SingletonSocket`` (dangling here). Existing ones
    are replaced. Returns the ``SingletonLock`` path.
    """
    profile.mkdir(parents=True, exist_ok=True)
    targets = {
        "SingletonLock": f"{host}-{pid}",
        "SingletonCookie": "8714965823764151309",
        "SingletonSocket": "/tmp/.org.chromium.Chromium.aB3dEf/SingletonSocket",
    }
    for name, target in targets.items():
        link = profile / name
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(target, link)
    return profile / "SingletonLock"
