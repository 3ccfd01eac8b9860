"""A stand-alone SMTP server for benchmarks: records (arrival time, Message-ID) per message.

Run as `python -m benchmarks.sink PORT OUTFILE [--fast]`; it writes one line per accepted message
and flushes every 0.2 s, so the benchmark can read arrivals while it runs. By default it is
aiosmtpd (about 2 ms of CPU per message, often the ceiling on 2 cores); `--fast` is a minimal
SMTP responder (EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT; no parsing beyond the Message-ID),
a stand-in for a relay that is not the bottleneck when the benchmark scales out replicas.
"""

from __future__ import annotations

import asyncio
import gc
import re
import signal
import sys
import time
from typing import Any, cast

from aiosmtpd.smtp import SMTP

_MID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


class Recorder:
    def __init__(self, out: Any) -> None:
        self.out = out

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or b""
        match = _MID.search(data, 0, 8192)
        mid = match.group(1).decode() if match else "-"
        self.out.write(f"{time.time():.6f} {mid}\n")
        return "250 2.0.0 OK"


class FastSMTP(asyncio.Protocol):
    """Just enough SMTP for aiosmtplib: one reply per command, DATA read up to the final dot."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.buffer = b""
        self.in_data = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(b"220 bench-sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while True:
            if self.in_data:
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    return
                message, self.buffer = self.buffer[: end + 2], self.buffer[end + 5 :]
                self.in_data = False
                match = _MID.search(message, 0, 8192)
                mid = match.group(1).decode() if match else "-"
                self.out.write(f"{time.time():.6f} {mid}\n")
                self.transport.write(b"250 2.0.0 OK\r\n")
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                return
            line, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
            verb = line[:4].upper()
            if verb == b"EHLO":
                self.transport.write(b"250-bench-sink\r\n250-8BITMIME\r\n250 SIZE 10485760\r\n")
            elif verb == b"DATA":
                self.in_data = True
                self.transport.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            elif verb == b"QUIT":
                self.transport.write(b"221 Bye\r\n")
                self.transport.close()
                return
            else:  # HELO, MAIL, RCPT, RSET, NOOP
                self.transport.write(b"250 OK\r\n")


async def main(port: int, path: str, fast: bool) -> None:
    with open(path, "a", buffering=1 << 16) as out:  # noqa: ASYNC230 - one open at start-up
        recorder = Recorder(out)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            (lambda: FastSMTP(out))
            if fast
            else (lambda: SMTP(recorder, hostname="bench-sink", data_size_limit=10 * 1024 * 1024)),
            "127.0.0.1",
            port,
        )
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)

        async def flusher() -> None:
            while True:
                await asyncio.sleep(0.2)
                out.flush()

        task = asyncio.create_task(flusher())
        # As `cancelnotify serve` does: start-up objects frozen, cycle collections rare. A pause
        # here would show up as late arrivals, charged to the service's latency.
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        print("ready", flush=True)
        await stop.wait()
        task.cancel()
        server.close()
        out.flush()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], fast="--fast" in sys.argv[3:]))
