"""Real server processes on loopback, started as a user would start them: shared by the tests and the
benchmarks (tests/conftest.py, bench/cluster.py), so both measure and check the same thing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``python -m mcp_server`` on an HTTP transport; its log beside its data folder."""

    def __init__(self, transport: str, data_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra_env or {}), "ADGEN_DATA_DIR": str(data_dir)}
        self.log = open(data_dir.parent / f"server-{transport}-{self.port}.log", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mcp_server", "--transport", transport, "--port", str(self.port)],
            cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_healthy(self, timeout: float = 60.0) -> dict:
        """/health's answer once it gives one; RuntimeError if the process exits, TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                r = httpx.get(self.base + "/health", timeout=2)
                if r.status_code == 200:
                    return dict(r.json())
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError("server did not become healthy")

    def stop(self) -> int:
        """SIGINT (a clean shutdown), then SIGKILL of its whole process group after 20 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()
        return self.proc.returncode
