"""`censustrace viewer` as deployed: several server processes (CENSUSTRACE_API_WORKERS) and, with
--no-demo-login (the compose service), no user created and no password printed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def test_viewer_with_workers_and_no_demo_login(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "CENSUSTRACE_HOME": str(tmp_path / "home"), "CENSUSTRACE_API_WORKERS": "2"}
    env.pop("CENSUSTRACE_LINEAGE_URL", None)
    cmd = [sys.executable, "-m", "censustrace.cli", "viewer", "--port", str(port), "--no-demo-login"]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, "the viewer stopped"
            assert time.monotonic() < deadline, "the viewer did not answer"
            time.sleep(0.5)
        # Both worker processes are up: uvicorn's supervisor plus two children.
        children = subprocess.run(
            ["pgrep", "-g", str(proc.pid)], capture_output=True, text=True
        ).stdout.split()
        assert len(children) >= 3
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    assert "login:" not in output
    assert not (tmp_path / "home" / "viewer-login.json").exists()
