"""Real servers for the web tests: uvicorn in a thread, and a reverse proxy that forwards.

``serve`` binds and listens before uvicorn starts and returns once the app's lifespan startup
has completed, so a request never races the server's start: the kernel queues it until uvicorn
accepts. Loopback is a whole network (127.0.0.0/8) on Linux, so clients, the proxy and the
servers can each have an address of their own (``local_address=``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

#: The addresses the peer tests use (all loopback).
SERVER_HOST = "127.0.0.1"  # servers listen here; a local process's default source address
TRUSTED = "127.0.0.2"  # a peer whose plain claims count
PROXY = "127.0.0.3"  # the address a named proxy connects from
STRANGER = "127.0.0.4"  # a peer nobody trusts


def require_loopback_aliases() -> None:
    """Skip unless this host can use 127.0.0.2-4 as source addresses (Linux can)."""
    for host in (TRUSTED, PROXY, STRANGER):
        with socket.socket() as sock:
            try:
                sock.bind((host, 0))
            except OSError:
                pytest.skip(f"{host} is not a usable loopback address here")


class _Ready:
    """Outermost ASGI app: tells the test when lifespan startup is over, and how it went."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.event = threading.Event()
        self.failed = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def watch(message: Any) -> None:
            await send(message)
            if message["type"].startswith("lifespan.startup."):
                self.failed = message["type"] == "lifespan.startup.failed"
                self.event.set()

        await self.app(scope, receive, watch)


@contextlib.contextmanager
def serve(app: Any, *, host: str = SERVER_HOST, **options: Any) -> Iterator[str]:
    """Run ``app`` under a real uvicorn server on ``host`` (ephemeral port) in a thread; yields
    its base URL. ``options`` go to ``uvicorn.Config`` (``proxy_headers``, ``log_level``...)."""
    sock = socket.socket()
    sock.bind((host, 0))
    sock.listen(128)
    ready = _Ready(app)
    options.setdefault("log_level", "warning")
    srv = uvicorn.Server(uvicorn.Config(ready, lifespan="on", **options))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        assert ready.event.wait(10), "uvicorn did not start"
        assert not ready.failed, "the app's lifespan startup failed"
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()


class ForwardingProxy:
    """A reverse proxy (an ASGI app): forwards each request to ``upstream``, connecting from
    ``source``, and appends its peer's address to ``X-Forwarded-For`` and sets ``X-Real-IP`` to
    it, as nginx does with ``$proxy_add_x_forwarded_for`` and ``$remote_addr``."""

    def __init__(self, upstream: str, *, source: str = PROXY) -> None:
        self.upstream, self.source = upstream, source

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        peer = scope["client"][0]
        drop = {b"host", b"connection", b"content-length", b"x-real-ip", b"x-forwarded-for"}
        headers = [(k, v) for k, v in scope["headers"] if k not in drop]
        prior = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"]
        headers.append((b"x-forwarded-for", ", ".join([*prior, peer]).encode()))
        headers.append((b"x-real-ip", peer.encode()))
        url = self.upstream + scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode("latin-1")
        transport = httpx.AsyncHTTPTransport(local_address=self.source)
        async with httpx.AsyncClient(transport=transport, timeout=30) as client:
            answer = await client.request(scope["method"], url, headers=headers, content=body)
        keep = [
            (k, v)
            for k, v in answer.headers.raw
            if k.lower()
            not in (b"content-length", b"content-encoding", b"transfer-encoding", b"connection")
        ]
        keep.append((b"content-length", str(len(answer.content)).encode()))
        await send({"type": "http.response.start", "status": answer.status_code, "headers": keep})
        await send({"type": "http.response.body", "body": answer.content})


@contextlib.contextmanager
def proxy_to(upstream: str, *, source: str = PROXY) -> Iterator[str]:
    """A :class:`ForwardingProxy` to ``upstream`` under its own uvicorn; yields its URL."""
    with serve(ForwardingProxy(upstream, source=source), proxy_headers=False) as url:
        yield url


def client_from(address: str, base_url: str) -> httpx.Client:
    """An httpx client whose connections come from ``address``."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(transport=transport, base_url=base_url, timeout=30)
