"""The api processes' own listening sockets (services/api/serving.py)."""

from __future__ import annotations

import asyncio
import socket

from services.api.serving import listening_socket


async def nodelay_of_a_connection(sock: socket.socket) -> int:
    """TCP_NODELAY on the server's side of a connection accepted by asyncio (as uvicorn does) on `sock`."""
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def handle(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.set_result(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    async with await asyncio.start_server(handle, sock=sock):
        _, client = await asyncio.open_connection(*sock.getsockname()[:2])
        try:
            return await asyncio.wait_for(seen, 5)
        finally:
            client.close()


def test_connections_on_an_api_processs_socket_send_without_delay() -> None:
    """asyncio sets TCP_NODELAY only where the socket says it is TCP; without it each response's last segment
    waited for the client's delayed ACK: 48 ms a request, on every route, with `--workers 2`."""
    assert asyncio.run(nodelay_of_a_connection(listening_socket("127.0.0.1", 0))) == 1
