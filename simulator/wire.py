"""Wire-level faults every protocol shares: a dropped connection and a request that hangs.

A *reset* must look to the client like the provider's load balancer closing the socket
before any response byte: uvicorn's transport is aborted from inside the handler (reached
through the ASGI ``receive`` callable, a bound method of uvicorn's request cycle), and
whatever the handler returns afterwards is discarded because the cycle is disconnected.
A *timeout* hangs until the client gives up (it disconnects) or ``max_s`` passes, so a
test with a short client timeout does not leave the server busy for a minute.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

HANG_MAX_S = 60.0


async def drop_connection(request: Request) -> Response:
    """Abort the TCP connection without a response; returns a response nobody will see."""
    await request.body()  # read fully first, as a proxy would before giving up
    cycle: Any = getattr(request.receive, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is not None:
        transport.abort()
        await asyncio.sleep(0)  # let connection_lost mark the cycle disconnected
    return Response(status_code=500)


async def hang(request: Request, max_s: float = HANG_MAX_S) -> None:
    """Hold the request open until the client disconnects or ``max_s`` passes."""
    await request.body()  # afterwards receive() only reports a disconnect
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_s
    while loop.time() < deadline:
        if await request.is_disconnected():
            return
        await asyncio.sleep(0.05)
