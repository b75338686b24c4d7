"""Start-up of the listening commands (``llm-connect serve``, ``llm-connect mock-server``).

A server that cannot start says why in one line on stderr and exits with code 2 (bad set-up), never with a
traceback: :func:`startup_errors` turns the :class:`~llm_connect.errors.LLMConfigurationError` raised while
starting into that line, and :func:`check_listen` / :func:`listen_error` name the address and the problem
when the port cannot be listened on (taken, privileged, not an address of this machine).
"""

from __future__ import annotations

import errno
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import MappingProxyType

from .errors import LLMConfigurationError

__all__ = ["check_listen", "listen_error", "startup_errors"]

_REASONS = MappingProxyType(
    {
        errno.EADDRINUSE: "the port is already in use (another server is listening there)",
        errno.EACCES: "permission denied (ports below 1024 need privileges)",
        errno.EADDRNOTAVAIL: "the address is not one of this machine's",
    }
)


def listen_error(host: str, port: int, exc: OSError) -> LLMConfigurationError:
    """The error for a failed bind of ``host:port``: one line naming the address and the problem."""
    reason = _REASONS.get(exc.errno or 0) or exc.strerror or str(exc)
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return LLMConfigurationError(f"cannot listen on {where}: {reason}")


def check_listen(host: str, port: int) -> None:
    """Raise :func:`listen_error`'s error when ``host:port`` cannot be bound now.

    A trial bind, as the server will do it (``SO_REUSEADDR``, so a port whose old connections linger in
    TIME_WAIT is free): for servers whose own bind failure cannot be caught (uvicorn logs it and exits).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        raise listen_error(host, port, exc) from None


@contextmanager
def startup_errors() -> Iterator[None]:
    """An LLMConfigurationError raised inside becomes ``error: <message>`` on stderr and exit code 2."""
    try:
        yield
    except LLMConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
