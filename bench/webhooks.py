"""Webhook receiver benchmark: ``cxhub run`` (one uvicorn worker, PostgreSQL store) against
encrypted WeChat pushes, with a hello-world FastAPI endpoint served the same way as the ceiling.

    .venv/bin/python bench/webhooks.py [--step-seconds 4] [--max-rate 3000]

What it does (loopback only, bounded in count and time):

1. creates a throwaway PostgreSQL database and a config with one safe-mode ``wechat_oa`` source;
2. starts ``cxhub run`` as a subprocess and, separately, uvicorn serving a hello-world FastAPI app
   (same uvicorn settings: one worker, access log off);
3. from a second process (this script with ``--drive``), sends pushes sealed by wechatpy exactly as
   WeChat would (unique MsgId each) at rising open-loop rates over keep-alive connections; latency
   is measured from each request's *scheduled* time, so queueing counts;
4. reports the highest rate sustained (>= 95 % of the offered rate answered 200 in the step,
   no errors, p99 < 250 ms; the ladder stops after two failed steps in a row), p50 / p99 at
   200 req/s, the hello-world ceiling and the ratio, and checks that every accepted push is a
   stored touchpoint. It runs ``cxhub run`` twice: with the case feature's hook off (the receiver
   itself) and with the default features (every message is judged for negative feedback).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
TOKEN = "bench-token"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APPID = "wxbench000000001"
RATES = [200, 300, 400, 500, 600, 800, 1000, 1200, 1500, 1800, 2200, 2600, 3000, 4000]
SUSTAIN_P99 = 0.250


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- load driver (second process)


def make_requests(path: str, n: int, start_id: int) -> list[bytes]:
    """``n`` raw HTTP/1.1 requests, each a push sealed by wechatpy like WeChat seals it."""
    import xmltodict
    from wechatpy.crypto import WeChatCrypto

    crypto = WeChatCrypto(TOKEN, AES_KEY, APPID)
    now = int(time.time())
    out = []
    for i in range(start_id, start_id + n):
        xml = (
            f"<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName><![CDATA[oUser{i % 5000}]]></FromUserName>"
            f"<CreateTime>{now}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[你好，请问营业时间 {i}]]>"
            f"</Content><MsgId>{10**15 + i}</MsgId></xml>"
        )
        nonce = str(i)
        sealed = xmltodict.parse(crypto.encrypt_message(xml, nonce, str(now)))["xml"]
        body = f"<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><Encrypt><![CDATA[{sealed['Encrypt']}]]></Encrypt></xml>"
        q = urlencode(
            {"timestamp": now, "nonce": nonce, "encrypt_type": "aes", "msg_signature": sealed["MsgSignature"]}
        )
        raw = body.encode()
        out.append(
            f"POST {path}?{q} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
            f"Content-Length: {len(raw)}\r\n\r\n".encode()
            + raw
        )
    return out


async def _conn_worker(
    host: str, port: int, queue: asyncio.Queue[tuple[float, bytes] | None], lat: list[float], errors: list[str]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            item = await queue.get()
            if item is None:
                return
            scheduled, req = item
            try:
                writer.write(req)
                status_line = await reader.readline()
                length = 0
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length) if length else b""
                status = int(status_line.split()[1])
                if status != 200 or body not in (b"success", b"ok"):
                    errors.append(f"{status} {body[:60]!r}")
                else:
                    lat.append(time.perf_counter() - scheduled)
            except Exception as exc:
                errors.append(type(exc).__name__)
                reader, writer = await asyncio.open_connection(host, port)
    finally:
        writer.close()


async def drive(host: str, port: int, requests: list[bytes], rate: float, connections: int) -> dict[str, Any]:
    """Offer ``requests`` at ``rate`` per second (open loop); latencies from the scheduled time."""
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    lat: list[float] = []
    errors: list[str] = []
    workers = [asyncio.create_task(_conn_worker(host, port, queue, lat, errors)) for _ in range(connections)]
    await asyncio.sleep(0.2)  # connections up
    start = time.perf_counter()
    for i, req in enumerate(requests):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((due, req))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.wait_for(asyncio.gather(*workers), timeout=60)
    elapsed = time.perf_counter() - start
    lat.sort()

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    return {
        "rate": rate,
        "sent": len(requests),
        "ok": len(lat),
        "errors": len(errors),
        "first_errors": errors[:3],
        "achieved": len(lat) / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "mean_ms": statistics.fmean(lat) * 1000 if lat else float("nan"),
    }


def driver_main(args: argparse.Namespace) -> None:
    n = int(args.rate * args.seconds)
    if args.hello:
        raw = b"x" * 600
        reqs = [
            b"POST /hooks/hello HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\nContent-Length: 600\r\n\r\n"
            + raw
        ] * n
    else:
        reqs = make_requests("/hooks/oa", n, args.start_id)
    if sys.platform != "win32":
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
    result = asyncio.run(drive("127.0.0.1", args.port, reqs, args.rate, args.connections))
    print(json.dumps(result))


# ---------------------------------------------------------------- orchestration


HELLO_APP = textwrap.dedent(
    """
    from fastapi import FastAPI, Request, Response

    app = FastAPI()

    @app.post("/hooks/hello")
    async def hello(request: Request) -> Response:
        await request.body()
        return Response(b"success", media_type="text/plain")
    """
)


def wait_ready(port: int, path: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not come up")


def run_step(port: int, rate: float, seconds: float, connections: int, start_id: int, hello: bool) -> dict[str, Any]:
    cmd = [PY, __file__, "--drive", "--port", str(port), "--rate", str(rate), "--seconds", str(seconds)]
    cmd += ["--connections", str(connections), "--start-id", str(start_id)] + (["--hello"] if hello else [])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"driver failed: {out.stderr[-800:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def sustained(step: dict[str, Any]) -> bool:
    return step["errors"] == 0 and step["achieved"] >= 0.95 * step["rate"] and step["p99_ms"] < SUSTAIN_P99 * 1000


def ladder(
    port: int, args: argparse.Namespace, hello: bool, label: str, next_id: list[int], answered: list[int]
) -> tuple[float, dict[str, Any]]:
    best = 0.0
    misses = 0
    at200: dict[str, Any] = {}
    for rate in [r for r in RATES if r <= args.max_rate]:
        step = run_step(port, rate, args.step_seconds, args.connections, next_id[0], hello)
        next_id[0] += step["sent"]
        answered[0] += step["ok"]
        ok = sustained(step)
        print(
            f"  {label:<11} {rate:>5} req/s offered: {step['achieved']:7.0f} answered/s, p50 {step['p50_ms']:6.1f} ms, "
            f"p99 {step['p99_ms']:7.1f} ms, errors {step['errors']}{'' if ok else '  <- not sustained'}",
            flush=True,
        )
        if rate == 200:
            at200 = step
        # a shared machine has noisy seconds: stop after two failed steps in a row, not one
        misses = 0 if ok else misses + 1
        if ok:
            best = float(rate)
        if misses == 2:
            break
    return best, at200


def hub_config(pg_url: str, port: int, features: bool) -> str:
    """One safe-mode WeChat source; ``features=False`` switches the case feature's hook off so that
    the receiver itself is measured (verify, decrypt, map, resolve identity, commit)."""
    extra = "" if features else "feedback: {enabled: false}\n"
    return extra + textwrap.dedent(
        f"""
        store: {{url: "{pg_url}", pool_size: 5}}
        server: {{host: 127.0.0.1, port: {port}}}
        sources:
          oa:
            connector: wechat_oa
            options: {{token: {TOKEN}, encoding_aes_key: {AES_KEY}, app_id: {APPID}}}
        """
    )


def phase(
    cmd: list[str], port: int, ready: str, cwd: str, env: dict[str, str], args: argparse.Namespace, label: str,
    hello: bool, next_id: list[int], answered: list[int], max_rate: float,
) -> tuple[float, dict[str, Any]]:  # fmt: skip
    """Start one server, warm it up, run the rate ladder, stop it (servers never run side by side)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, ready, proc)
        # pool, caches, first imports, and the same keep-alive connections the ladder uses (opening 56
        # more inside the first measured step would show up as its latency)
        warm = run_step(port, 100, 2, args.connections, 10**9 + next_id[0], hello)
        next_id[0] += warm["sent"]
        answered[0] += warm["ok"]
        print(f"{label} ({args.step_seconds:g} s per step):", flush=True)
        limited = argparse.Namespace(**{**vars(args), "max_rate": min(max_rate, args.max_rate)})
        return ladder(port, limited, hello, label.split()[0], next_id, answered)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--drive", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--hello", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--rate", type=float, default=200, help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=4, help=argparse.SUPPRESS)
    ap.add_argument("--start-id", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--connections", type=int, default=64, help="keep-alive connections of the driver")
    ap.add_argument("--step-seconds", type=float, default=4.0, help="length of each rate step")
    ap.add_argument("--max-rate", type=float, default=3000, help="highest rate offered")
    args = ap.parse_args()
    if args.drive:
        driver_main(args)
        return

    sys.path.insert(0, str(ROOT))
    from sqlalchemy import create_engine, func, select

    from hub.store.schema import touchpoints
    from tests.kit.databases import temporary_postgres_database

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"webhook receiver benchmark: {os.cpu_count()} CPUs, load average {load:.1f} at start; one uvicorn worker")
    cxhub = str(Path(PY).with_name("cxhub"))
    env = {**os.environ, "CXHUB_SECRET_KEY": "bench-secret-key", "CXHUB_LOG_LEVEL": "ERROR"}
    next_id = [0]
    results: dict[str, tuple[float, dict[str, Any]]] = {}
    answered = [0]
    with temporary_postgres_database() as pg_url, tempfile.TemporaryDirectory() as tmp:
        for features in (False, True):
            port = free_port()
            cfg = Path(tmp) / f"bench-{features}.yaml"
            cfg.write_text(hub_config(pg_url, port, features))
            label = "cxhub run, receiver only (case hook off)" if not features else "cxhub run, default features"
            results[label] = phase(
                [cxhub, "run", "--config", str(cfg)], port, "/healthz", tmp, env, args, label, False,
                next_id, answered, args.max_rate if not features else 600,
            )  # fmt: skip
        (Path(tmp) / "hello_app.py").write_text(HELLO_APP)
        hello_port = free_port()
        hello_cmd = [PY, "-m", "uvicorn", "hello_app:app", "--host", "127.0.0.1", "--port", str(hello_port),
                     "--workers", "1", "--log-level", "warning", "--no-access-log"]  # fmt: skip
        hello_label = "hello-world FastAPI, same uvicorn settings"
        results[hello_label] = phase(
            hello_cmd, hello_port, "/docs", tmp, env, args, hello_label, True, next_id, [0], args.max_rate
        )
        engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
        with engine.connect() as conn:
            stored = conn.execute(select(func.count()).select_from(touchpoints)).scalar_one()
        engine.dispose()
    print()
    ceiling = results[hello_label][0]
    for label, (best, at200) in results.items():
        ratio = f", {best / ceiling:.2f} of the ceiling" if ceiling and label != hello_label else ""
        line = f"{label:<45} max sustained {best:6.0f} req/s{ratio}"
        if at200:
            line += f"; at 200 req/s p50 {at200['p50_ms']:.1f} ms, p99 {at200['p99_ms']:.1f} ms"
        print(line)
    print(f"pushes answered 'success' by cxhub: {answered[0]}; touchpoints stored: {stored}")
    print("targets: >= 1000 verified and stored req/s per worker; p99 < 50 ms at 200 req/s")


if __name__ == "__main__":
    main()
