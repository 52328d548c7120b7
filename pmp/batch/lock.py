"""Locks of run and sweep directories: one writer at a time, whatever the command.

A writer holds an operating-system lock (``filelock``, on ``DIR/.lock-ROLE``) for as long as
it writes; the lock goes with the process, also after ``kill -9``. Beside it a small file
``DIR/.lock-ROLE.json`` names the holder (process id, command, start time), so that a second
writer is refused in one line that names the process in the way. The roles are
``"run"`` (training, resuming, replacing a run) and ``"analysis"`` (writing ``analysis.h5``):
an analysis may run while the run trains, since the trainer never writes its file.
"""
import json
import os
import sys
import time

from filelock import FileLock, Timeout


class DirectoryInUse(RuntimeError):
    """Another process writes this directory."""


class DirectoryLock:
    """A context manager holding the ``role`` lock of ``directory`` (created if needed).

    Raises
    ------
    DirectoryInUse
        When another process holds it.
    """

    def __init__(self, directory, role="run", create=True):
        self.directory = os.fspath(directory)
        self.create = create
        self.role = role
        self.path = os.path.join(self.directory, f".lock-{role}")
        self.holder_file = f"{self.path}.json"
        self._lock = None

    def __enter__(self):
        if not self.create and not os.path.isdir(self.directory):
            raise FileNotFoundError(f"no run directory {self.directory}")
        os.makedirs(self.directory, exist_ok=True)
        lock = FileLock(self.path, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise DirectoryInUse(f"{self.directory} is in use by {self._describe_holder()}; "
                                 f"wait for it to finish or stop it") from None
        self._lock = lock
        try:
            with open(self.holder_file, "w") as f:
                json.dump(dict(pid=os.getpid(), command=" ".join(sys.argv),
                               started=time.strftime("%Y-%m-%d %H:%M:%S")), f)
        except OSError:  # a full disk must not hide the lock we hold
            pass
        return self

    def __exit__(self, *exc):
        try:
            os.remove(self.holder_file)
        except OSError:
            pass
        self._lock.release()
        self._lock = None

    def holder(self):
        """The holder's description when its process is alive, else None (read only: the
        lock itself is not touched)."""
        try:
            with open(self.holder_file) as f:
                pid = json.load(f)["pid"]
            os.kill(pid, 0)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return self._describe_holder()

    def _describe_holder(self):
        try:
            with open(self.holder_file) as f:
                holder = json.load(f)
            return f"process {holder['pid']} ({holder['command']}, since {holder['started']})"
        except (OSError, ValueError, KeyError):
            return "another process"
