"""``prts up``'s process supervisor: runs the web server and the worker, restarts them when
they crash, and stops both cleanly on Ctrl-C or SIGTERM.

The supervisor itself stays small (no database driver, no chdb): the children do the work.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class Child:
    name: str
    argv: list[str]
    # The signal that asks this program for a graceful stop: gunicorn drains on SIGTERM,
    # the Huey consumer finishes running tasks on SIGINT (SIGTERM makes it stop at once).
    stop_signal: int
    process: subprocess.Popen | None = None
    restarts: list[float] = field(default_factory=list)
    next_start: float = 0.0

    def start(self) -> None:
        # A process group of its own: a terminal's Ctrl-C reaches only the supervisor, which
        # then stops each child with the signal that child wants.
        self.process = subprocess.Popen(self.argv, process_group=0)
        log.info("started %s", self.name, extra={"pid": self.process.pid})

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Supervisor:
    MAX_RESTARTS = 5  # within RESTART_WINDOW seconds; past that the supervisor gives up
    RESTART_WINDOW = 60.0
    STOP_TIMEOUT = 30.0

    def __init__(self, children: list[Child], ready_url: str | None = None):
        self.children = children
        self.ready_url = ready_url
        self._stopping = False
        self.failed = False

    def _request_stop(self, signum, _frame) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        self._stopping = True

    def run(self, on_ready=None) -> int:
        previous = {s: signal.signal(s, self._request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for child in self.children:
                child.start()
            announced = self.ready_url is None
            while not self._stopping:
                self._reap_and_restart()
                if self.failed:
                    break
                if not announced and self._is_ready():
                    announced = True
                    if on_ready:
                        on_ready()
                time.sleep(0.2)
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 1 if self.failed else 0

    def _is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.ready_url, timeout=1) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _reap_and_restart(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.alive():
                continue
            if child.process is not None and child.next_start == 0.0:
                code = child.process.returncode
                child.restarts = [t for t in child.restarts if now - t < self.RESTART_WINDOW] + [now]
                if len(child.restarts) > self.MAX_RESTARTS:
                    log.error("%s keeps exiting (code %s); giving up", child.name, code)
                    self.failed = True
                    return
                delay = min(2 ** (len(child.restarts) - 1), 30)
                log.warning("%s exited with code %s; restarting in %ss", child.name, code, delay)
                child.next_start = now + delay
            if child.next_start and now >= child.next_start:
                child.next_start = 0.0
                child.start()

    def _stop_all(self) -> None:
        for child in self.children:
            if child.alive():
                child.process.send_signal(child.stop_signal)
        deadline = time.monotonic() + self.STOP_TIMEOUT
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %ss; killing it", child.name, self.STOP_TIMEOUT)
                child.process.kill()
                child.process.wait()
            log.info("stopped %s", child.name, extra={"code": child.process.returncode})


def prts_command(*args: str) -> list[str]:
    """argv that runs a ``prts`` subcommand with this interpreter (no reliance on PATH)."""
    return [sys.executable, "-m", "appliance", *args]
