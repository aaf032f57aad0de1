"""HTTP load over loopback: start an ASGI app under granian, then load it with wrk (or Python).

Every target is ``127.0.0.1``; every load run is bounded by ``duration``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from benchmarks.core import percentile

REPO_ROOT = Path(__file__).resolve().parent.parent
WRK_POST_SCRIPT = Path(__file__).resolve().parent / "wrk_post.lua"
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class LoadResult:
    requests_per_s: float
    requests: int
    errors: int  # non-2xx answers plus socket errors
    p50_ms: float
    p99_ms: float
    tool: str


def loadgen_name() -> str:
    return "wrk" if shutil.which("wrk") else "python"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- server


@dataclass(frozen=True)
class Server:
    base_url: str


async def _wait_ready(url: str, proc: asyncio.subprocess.Process, within: float) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"server exited early with code {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise TimeoutError(f"server not ready at {url} after {within:.0f}s")


async def _stop(proc: asyncio.subprocess.Process, grace: float = 10.0) -> None:
    if proc.returncode is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        # The server runs in its own process group (start_new_session), so this ends only it.
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


@contextlib.asynccontextmanager
async def granian_server(
    target: str,
    env: Mapping[str, str],
    *,
    health_path: str = "/health",
    workers: int = 1,
    ready_timeout: float = 30.0,
) -> AsyncIterator[Server]:
    """Serve ``target`` (``module:attr``) with granian on a free loopback port until exit."""
    port = free_port()
    args = [
        "-m", "granian",
        "--interface", "asgi",
        "--workers", str(workers),
        "--host", LOOPBACK,
        "--port", str(port),
        "--no-ws",
        "--log-level", "warning",
        target,
    ]  # fmt: skip
    child_env = {**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)}
    with tempfile.TemporaryFile() as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            cwd=REPO_ROOT,
            env=child_env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        base_url = f"http://{LOOPBACK}:{port}"
        try:
            await _wait_ready(base_url + health_path, proc, ready_timeout)
            yield Server(base_url=base_url)
        except BaseException:
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-4000:])
            raise
        finally:
            await _stop(proc)


# --------------------------------------------------------------------------- load: wrk

_DURATION_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _to_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_wrk(output: str) -> LoadResult:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in", output, re.MULTILINE)
    if not rps or not total:
        raise ValueError(f"cannot parse wrk output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", output, re.MULTILINE))
    return LoadResult(
        requests_per_s=float(rps.group(1)),
        requests=int(total.group(1)),
        errors=errors,
        p50_ms=_to_ms(latency["50"]) if "50" in latency else float("nan"),
        p99_ms=_to_ms(latency["99"]) if "99" in latency else float("nan"),
        tool="wrk",
    )


async def wrk(
    url: str, *, duration: float, connections: int, threads: int, script: Path | None
) -> LoadResult:
    args = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout", "5s",
        "--latency",
    ]  # fmt: skip
    if script is not None:
        args += ["-s", str(script)]
    proc = await asyncio.create_subprocess_exec(
        *args, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), duration + 30)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {err.decode()}")
    return parse_wrk(out.decode())


# --------------------------------------------------------------------------- load: Python fallback
#
# httpx managed well under 100 req/s with 64 concurrent requests here, so the fallback speaks
# HTTP/1.1 keep-alive itself: one prebuilt request per connection, responses read by Content-Length
# (or chunked). Still CPU-bound in this process: compare its numbers only with its own.


def build_request(url: str, body: bytes | None) -> bytes:
    parts = urlsplit(url)
    method = "POST" if body is not None else "GET"
    headers = [f"{method} {parts.path or '/'} HTTP/1.1", f"Host: {parts.netloc}", "Connection: keep-alive"]
    if body is not None:
        headers += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + (body or b"")


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one response; return its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
    }
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            await reader.readexactly(size + 2)  # chunk data and its CRLF
            if size == 0:
                break
    else:
        await reader.readexactly(int(headers.get("content-length", "0")))
    return status


async def python_load(url: str, *, duration: float, connections: int, body: bytes | None) -> LoadResult:
    """Closed-loop keep-alive load from this process (the fallback when wrk is missing)."""
    parts = urlsplit(url)
    request = build_request(url, body)
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration

    async def one_connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                writer.write(request)
                status = await asyncio.wait_for(read_response(reader), 5.0)
                latencies.append((time.perf_counter() - t0) * 1e3)
                errors += 0 if 200 <= status < 300 else 1
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            errors += 1
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    start = time.perf_counter()
    await asyncio.gather(*(one_connection() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    return LoadResult(
        requests_per_s=len(latencies) / elapsed,
        requests=len(latencies),
        errors=errors,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        tool="python",
    )


# --------------------------------------------------------------------------- entry point

POST_BODY: dict[str, object] = {"queue_name": "bench-http", "payload": {"n": 1}, "priority": 0}


async def load(
    url: str,
    *,
    duration: float,
    connections: int = 64,
    post: bool = False,
    tool: str | None = None,
) -> LoadResult:
    """GET ``url`` (or POST :data:`POST_BODY`, the same body as ``wrk_post.lua``) for ``duration``."""
    if not url.startswith(f"http://{LOOPBACK}:"):
        raise ValueError("load targets must be on 127.0.0.1")
    if (tool or loadgen_name()) == "wrk":
        script = WRK_POST_SCRIPT if post else None
        return await wrk(url, duration=duration, connections=connections, threads=2, script=script)
    body = json.dumps(POST_BODY, separators=(",", ":")).encode() if post else None
    return await python_load(url, duration=duration, connections=connections, body=body)
