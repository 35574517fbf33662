"""Network faults between a store and the server, made on purpose.

:class:`Proxy` forwards a local port to the PostgreSQL server. A test points a store
at the proxy, then cuts every connection (``cut``: like ``pg_terminate_backend`` seen
from the client, or a server restart), refuses new ones (``refuse``/``accept``: the
server is down), or stops forwarding without closing anything (``pause``/``resume``:
a failover-like pause, packets go nowhere).

:func:`password_rejecting_server` is a fake server that asks for a password and
refuses it as PostgreSQL does (``28P01``), since the test server trusts everyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncGenerator


class Proxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.accepted = 0

    async def accept(self) -> None:
        """Listen (again, on the same port)."""
        self._server = await asyncio.start_server(self._link, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def refuse(self) -> None:
        """Stop listening (new connections are refused) and cut every connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self.cut()

    def cut(self) -> None:
        for client, upstream in list(self._links):
            for writer in (client, upstream):
                writer.transport.abort()
        self._links.clear()

    def pause(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def close(self) -> None:
        await self.refuse()
        self.resume()

    async def _link(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.transport.abort()
            return
        link = (client_w, up_w)
        self._links.add(link)
        try:
            await asyncio.gather(self._pipe(client_r, up_w), self._pipe(up_r, client_w))
        finally:
            self._links.discard(link)
            client_w.transport.abort()
            up_w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()


@contextlib.asynccontextmanager
async def proxy_to(host: str, port: int) -> AsyncGenerator[Proxy]:
    proxy = Proxy(host, port)
    await proxy.accept()
    try:
        yield proxy
    finally:
        await proxy.close()


def _message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


def _error(code: str, message: str) -> bytes:
    fields = b"".join(
        tag + value.encode() + b"\0"
        for tag, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", code), (b"M", message))
    )
    return _message(b"E", fields + b"\0")


@contextlib.asynccontextmanager
async def password_rejecting_server() -> AsyncGenerator[int]:
    """A fake PostgreSQL server on a spare port (yielded) that asks for a cleartext
    password and refuses it: what a wrong password meets on a real server."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (length,) = struct.unpack("!I", await reader.readexactly(4))
                body = await reader.readexactly(length - 4)
                (code,) = struct.unpack("!I", body[:4])
                if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest: not here
                    writer.write(b"N")
                    await writer.drain()
                    continue
                break  # the startup message
            user = "?"
            params = body[4:].split(b"\0")
            for key, value in zip(params[::2], params[1::2], strict=False):
                if key == b"user":
                    user = value.decode()
            writer.write(_message(b"R", struct.pack("!I", 3)))  # AuthenticationCleartextPassword
            await writer.drain()
            kind = await reader.readexactly(1)
            (length,) = struct.unpack("!I", await reader.readexactly(4))
            await reader.readexactly(length - 4)
            assert kind == b"p"
            writer.write(_error("28P01", f'password authentication failed for user "{user}"'))
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
