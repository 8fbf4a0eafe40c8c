"""A `cordon start` subprocess for tests: wait for its ready line, read its stderr, stop it.

No threads: stderr is read with select() on a non-blocking pipe.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import cordon_argv, subprocess_env

READY_RE = re.compile(r"ready on 127\.0\.0\.1:(\d+)")


class StartProc:
    def __init__(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.proc = subprocess.Popen(cordon_argv("start", *args), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=subprocess_env(env), cwd=cwd)
        assert self.proc.stderr is not None
        os.set_blocking(self.proc.stderr.fileno(), False)
        self._buf = b""
        self.port: int | None = None

    @property
    def stderr(self) -> str:
        return self._buf.decode("utf-8", "replace")

    def pump(self, timeout: float) -> bool:
        """Read what stderr has within `timeout`; False at EOF."""
        assert self.proc.stderr is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stderr, selectors.EVENT_READ)
            if not sel.select(timeout):
                return True
        try:
            chunk = os.read(self.proc.stderr.fileno(), 65536)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        self._buf += chunk
        return True

    def wait_ready(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = READY_RE.search(self.stderr)
            if m:
                self.port = int(m.group(1))
                return self.port
            if not self.pump(0.05) and self.proc.poll() is not None:
                break
        raise AssertionError(f"no ready line (exit {self.proc.poll()}):\n{self.stderr}")

    def wait_exit(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.pump(0.05):
                return self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        raise AssertionError(f"cordon start did not exit:\n{self.stderr}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        status = self.wait_exit()
        self.close()
        return status

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()

    def lines(self) -> list[str]:
        return self.stderr.splitlines()


@contextlib.contextmanager
def started(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Iterator[StartProc]:
    sp = StartProc(*args, env=env, cwd=cwd)
    try:
        sp.wait_ready()
        yield sp
    finally:
        if sp.proc.poll() is None:
            sp.stop()
        else:
            sp.close()

