"""A stand-alone aiosmtpd server for benchmarks: records (arrival time, Message-ID) per message.

Run as `python -m benchmarks.sink PORT OUTFILE`; it writes one line per accepted message and
flushes every 0.2 s, so the benchmark can read arrivals while it runs.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import time
from typing import Any

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


async def main(port: int, path: str) -> None:
    with open(path, "a", buffering=1 << 16) as out:  # noqa: ASYNC230 - one open at start-up
        recorder = Recorder(out)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(recorder, hostname="bench-sink", data_size_limit=10 * 1024 * 1024),
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
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
