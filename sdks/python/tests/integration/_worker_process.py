"""A worker in its own process, for the signal tests: ``python _worker_process.py TRANSPORT QUEUE MODE``.

MODE ``finish``: each handler takes 1.5 s. MODE ``stuck``: handlers sleep 120 s ignoring cancellation
(shutdown must give up on them, and the process must still exit).
Prints ``STARTED <job_id>`` when a handler starts and ``STOPPED`` when the worker returns.
"""

from __future__ import annotations

import sys
import time

from spooled import SpooledClient, SpooledWorker


def main() -> None:
    transport, queue, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    client = SpooledClient()
    worker = SpooledWorker(
        client,
        queue,
        concurrency=2,
        transport=transport,  # type: ignore[arg-type]
        lease_duration_secs=5,
        shutdown_timeout=1.0 if mode == "stuck" else 20.0,
        claim_wait_secs=1.0,
    )

    @worker.process
    def handle(ctx: object) -> dict[str, str]:
        print("STARTED", worker_ctx_id(ctx), flush=True)
        if mode == "stuck":
            time.sleep(120)  # ignores cancellation on purpose: shutdown must not wait for it
        else:
            time.sleep(1.5)
        return {"mode": mode}

    worker.start()
    print("STOPPED", flush=True)
    client.close()


def worker_ctx_id(ctx: object) -> str:
    return str(getattr(ctx, "job_id", "?"))


if __name__ == "__main__":
    main()
