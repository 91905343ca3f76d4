"""Files only their owner may read: every database dump Agentry writes is one.

A dump holds every user's messages and their (encrypted) credentials, so the mechanic's
pre-change dumps, ``agentry backup`` and the PostgreSQL 16 -> 18 upgrade's dumps are all
made here: 0600 files in a 0700 folder, whatever the umask.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_FOLDER_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_folder(folder: Path) -> Path:
    """Create ``folder`` (and parents) readable by the owner only; tighten it if it exists.

    Tightening an existing folder also protects the dumps older versions left in it
    world-readable.
    """
    folder.mkdir(parents=True, exist_ok=True, mode=PRIVATE_FOLDER_MODE)
    os.chmod(folder, PRIVATE_FOLDER_MODE)
    return folder


def private_file(path: Path) -> Path:
    """Create an empty file only the owner may read, before a tool writes into it.

    Made with its mode at creation (not chmod after), so there is no moment when
    another user could open it.
    """
    private_folder(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    os.close(fd)
    os.chmod(path, PRIVATE_FILE_MODE)  # O_CREAT keeps the mode of a file that existed
    return path
