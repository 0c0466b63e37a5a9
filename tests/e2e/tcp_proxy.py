"""A TCP proxy the test controls, for cutting a service off from PostgreSQL without stopping the
shared server.

Every carehub process is pointed at the proxy's port instead of PostgreSQL's. The proxy runs an
asyncio loop in a thread of its own (so it keeps forwarding while the test blocks), pipes each
client connection to the target, and on `cut()`:

* drops every connection it carries: both sides are aborted (an RST, no FIN), as when a network
  path dies under a process;
* then either refuses each new connection (accepted and reset at once: ``mode="refuse"``) or
  blackholes it (accepted, read and never answered, as behind a silent firewall:
  ``mode="blackhole"``) until `resume()`, which resets the held ones and forwards again.

    with TcpProxy("127.0.0.1", 5432) as proxy:
        ...connect to 127.0.0.1:proxy.port...
        proxy.cut("blackhole"); time.sleep(20); proxy.resume()
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections import Counter
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

Mode = Literal["refuse", "blackhole"]
T = TypeVar("T")
CHUNK = 65536


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST rather than a FIN (SO_LINGER 0), like a connection that died."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy:
    """Forward 127.0.0.1:`port` to `target_host`:`target_port`; cut and resume on demand."""

    def __init__(self, target_host: str, target_port: int, listen_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self.port = 0
        self.mode: Mode | None = None  # None: forwarding
        self.stats: Counter[str] = Counter()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tcp-proxy", daemon=True
        )
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._held: set[asyncio.StreamWriter] = set()

    # --- control, from any thread -------------------------------------------------------------

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def cut(self, mode: Mode = "blackhole") -> int:
        """Drop every connection carried now, and refuse or blackhole new ones; return how many
        connections were dropped."""
        return self._call(self._cut(mode))

    def resume(self) -> int:
        """Forward new connections again; reset the ones held meanwhile (returns how many)."""
        return self._call(self._resume())

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    # --- in the proxy's loop ------------------------------------------------------------------

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.listen_host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _cut(self, mode: Mode) -> int:
        self.mode = mode
        pairs, self._pairs = list(self._pairs), set()
        for client, upstream in pairs:
            _reset(client)
            _reset(upstream)
        self.stats["dropped"] += len(pairs)
        self.stats["cuts"] += 1
        return len(pairs)

    async def _resume(self) -> int:
        self.mode = None
        held, self._held = list(self._held), set()
        for client in held:
            _reset(client)
        return len(held)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._cut("refuse")
        await self._resume()

    async def _accept(self, reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        self.stats["accepted"] += 1
        if self.mode == "refuse":
            self.stats["refused"] += 1
            _reset(client)
            return
        if self.mode == "blackhole":
            await self._hold(reader, client)
            return
        try:
            up_reader, upstream = await asyncio.open_connection(*self.target)
        except OSError:
            self.stats["target_unreachable"] += 1
            _reset(client)
            return
        if self.mode is not None:  # cut while we were connecting
            _reset(upstream)
            if self.mode == "blackhole":
                await self._hold(reader, client)
            else:
                _reset(client)
            return
        pair = (client, upstream)
        self._pairs.add(pair)
        self.stats["forwarded"] += 1
        try:
            await asyncio.gather(self._pipe(reader, upstream), self._pipe(up_reader, client))
        finally:
            self._pairs.discard(pair)

    async def _hold(self, reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        """Accept and say nothing: the client waits, as behind a firewall that drops packets."""
        self.stats["blackholed"] += 1
        self._held.add(client)
        try:
            while await reader.read(CHUNK):
                pass
        except OSError:
            pass
        finally:
            self._held.discard(client)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            # One side ended: end the other too, so neither waits on a half-open connection.
            if not writer.transport.is_closing():
                with contextlib.suppress(OSError):
                    writer.close()
