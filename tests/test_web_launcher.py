"""`python -m worker.web`: the web app in several uvicorn processes on one TCP socket."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.live_site import free_port
from worker.web.__main__ import tcp_socket


def test_the_shared_socket_is_made_as_tcp_so_connections_get_tcp_nodelay() -> None:
    # asyncio sets TCP_NODELAY only on sockets whose protocol is TCP; accepted connections
    # inherit the listening socket's.
    sock = tcp_socket("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
        sock.listen()
        client = socket.create_connection(sock.getsockname())
        accepted, _ = sock.accept()
        assert accepted.proto == socket.IPPROTO_TCP
        accepted.close()
        client.close()
    finally:
        sock.close()


def test_two_processes_serve_the_app_and_stop_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "VAR_DIR": str(tmp_path / "var"), "NEWSLETTER_TRANSPORT": "memory"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "worker.web",
            "--workers",
            "2",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        answer = ""
        while time.monotonic() < deadline and not answer:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    answer = r.read().decode()
            except OSError:
                time.sleep(0.2)
        assert answer == "ok"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/o/forged.gif", timeout=5) as r:
            assert r.headers["Content-Type"] == "image/gif"
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=30)[0].decode()
    assert server.returncode == 0, output
