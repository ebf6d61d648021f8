"""`python -m worker.web [--workers N]`: the web app under uvicorn, N processes on one socket.

With one process this is plain uvicorn. With several, the shared socket is made here, as a TCP
socket: uvicorn's own `--workers` socket leaves out the protocol number, so asyncio never turns
on TCP_NODELAY for its connections, and every small response whose body follows its headers
(the open pixel) then waits ~40 ms for the client's delayed ACK.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

import uvicorn
from uvicorn.supervisors import Multiprocess

APP = "worker.web:create_app"


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m worker.web", description=__doc__)
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PORT", "8000")),
        help="port (default $PORT or 8000)",
    )
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    parser.add_argument(
        "--forwarded-allow-ips",
        default=None,
        help="proxies whose X-Forwarded-For is trusted (default: uvicorn's, 127.0.0.1)",
    )
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--no-access-log", action="store_true", help="do not log each request")
    return parser.parse_args(argv)


def tcp_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def main(argv: list[str]) -> int:
    args = _arguments(argv)
    config = uvicorn.Config(
        APP,
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        forwarded_allow_ips=args.forwarded_allow_ips,
        log_level=args.log_level,
        access_log=not args.no_access_log,
    )
    if args.workers <= 1:
        uvicorn.Server(config).run()
        return 0
    Multiprocess(config, sockets=[tcp_socket(args.host, args.port)]).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
