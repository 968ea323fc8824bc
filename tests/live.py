"""A real ``prts up`` in a subprocess, on a free port and a temp data directory."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from servers import free_port


class LiveAppliance:
    def __init__(self, data_dir: Path, **env: str):
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PRTS_")}
        self.env.update(PRTS_DATA_DIR=str(data_dir), PRTS_WEB_LISTEN=f"127.0.0.1:{self.port}",
                        PRTS_LOG_FORMAT="text", PRTS_WEB_WORKERS="1")
        self.env.update(env)
        self.process: subprocess.Popen | None = None
        self.output: list[str] = []
        self.admin_password: str | None = None

    def start(self, timeout: float = 60) -> "LiveAppliance":
        self.output = []
        self.process = subprocess.Popen([sys.executable, "-m", "appliance", "up"], env=self.env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prts up exited with {self.process.returncode}:\n{self.log}")
            if "PRTS is ready at" in self.log:
                return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"prts up was not ready within {timeout}s:\n{self.log}")

    def _pump(self) -> None:
        for line in self.process.stdout:
            self.output.append(line)
            if match := re.search(r"password: (\S+)", line):
                self.admin_password = match.group(1)

    @property
    def log(self) -> str:
        return "".join(self.output)

    def children(self) -> list[int]:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.process.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode if self.process else 0


class Browserless:
    """Form posts over real HTTP with a cookie jar: a client with no JavaScript."""

    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path: str):
        return self.opener.open(self.base + path, timeout=10)

    def post_form(self, path: str, fields: dict, token_from: str):
        page = self.get(token_from).read().decode()
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        data = urllib.parse.urlencode({**fields, "csrf_token": token}).encode()
        return self.opener.open(self.base + path, data=data, timeout=10)
