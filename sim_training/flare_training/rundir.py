"""One writer per run directory: a second trainer on the same `--out` is refused while the first lives.

The lock is an `flock` on `OUT/.lock`, which the kernel releases when its process ends however it ends
(Ctrl-C, `kill -9`, out of memory), so a killed run never leaves a stale lock behind and resuming just works.
The file keeps the holder's pid, host and start time for the refusal message.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path


class RunDirectoryBusy(RuntimeError):
    """Another live trainer writes to this run directory."""


class RunLock:
    def __init__(self, out: str | Path) -> None:
        self.path = Path(out) / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunDirectoryBusy(
                f"{self.path.parent} is being written by a running trainer ({holder}); wait for it to finish, "
                "stop it (a BC, PPO or GRPO run goes on from where it stopped), or give another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.write(
            fd, f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode()
        )
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
