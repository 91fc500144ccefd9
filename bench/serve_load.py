#!/usr/bin/env python3
"""Load on the inference server: throughput, latency and errors at several concurrencies.

Starts ``python -m mowe serve`` on 127.0.0.1 (and, with ``--compare_pythonpath DIR``, the
same command from another checkout of the toolkit, e.g. a git worktree of an older
commit, one after the other on the same machine), then for each concurrency ``c`` runs
``c`` asyncio clients that send ``--requests`` chat requests in all, each with a real clip
of the manifest, and prints one row per (server, concurrency): requests per second, p50 and
p95 latency, and error counts by kind. Also 100 simultaneous ``/health`` requests (the
time until the last is answered) and, with ``--check_answers``, whether every answer under
load equals the answer to the same request sent alone. Only loopback addresses are used;
every loop is bounded in count and time.

Usage::

    python bench/serve_load.py --model PACKAGE --manifest data/.../test.json \\
        [--concurrency 1 4 16 64] [--requests 64] [--compare_pythonpath ../old] \\
        [--out bench/results/<date>_<machine>/serve_load.json]
"""

import argparse
import asyncio
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clips(manifest, limit):
    """``[(instruction, base64 wav)]`` of the manifest's first ``limit`` clips."""
    with open(manifest, encoding="utf-8") as handle:
        entries = json.load(handle)
    rows = []
    for entry in list(entries.values())[:limit]:
        with open(entry["wav"], "rb") as handle:
            rows.append((entry["instruction"], base64.b64encode(handle.read()).decode()))
    return rows


def body(instruction, audio):
    return {"messages": [{"role": "user", "content": [
        {"type": "text", "text": instruction},
        {"type": "input_audio", "input_audio": {"data": audio, "format": "wav"}}]}],
        "temperature": 0}


def start_server(model, pythonpath, port, extra):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=pythonpath)
    process = subprocess.Popen([sys.executable, "-m", "mowe.inference.model_server", "--model", model,
                                "--port", str(port), "--stop_after", "3600", *extra],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=env, cwd=pythonpath)
    deadline = time.monotonic() + 600
    for line in process.stdout:
        if line.startswith("serving "):
            return process
        if time.monotonic() > deadline:
            break
    process.kill()
    raise SystemExit(f"the server from {pythonpath} did not start")


async def one(client, url, payload, timeout):
    start = time.monotonic()
    try:
        response = await client.post(url + "/v1/chat/completions", json=payload,
                                     timeout=timeout)
        elapsed = time.monotonic() - start
        if response.status_code != 200:
            return elapsed, f"http_{response.status_code}", None
        return elapsed, None, response.json()["choices"][0]["message"]["content"]
    except Exception as error:  # connection reset, timeout ...: counted by kind
        return time.monotonic() - start, type(error).__name__, None


async def level(url, rows, concurrency, requests, timeout):
    import httpx

    jobs = asyncio.Queue()
    for index in range(requests):
        jobs.put_nowait(index)
    results = [None] * requests
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as client:
        async def worker():
            while True:
                try:
                    index = jobs.get_nowait()
                except asyncio.QueueEmpty:
                    return
                instruction, audio = rows[index % len(rows)]
                results[index] = await one(client, url, body(instruction, audio), timeout)

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.monotonic() - start
    latencies = sorted(r[0] for r in results if r[1] is None)
    errors = {}
    for _, kind, _ in results:
        if kind:
            errors[kind] = errors.get(kind, 0) + 1
    return {"concurrency": concurrency, "requests": requests, "wall_s": round(wall, 2),
            "ok": len(latencies), "requests_per_s": round(len(latencies) / wall, 3),
            "p50_s": round(statistics.median(latencies), 3) if latencies else None,
            "p95_s": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 3)
            if latencies else None, "errors": errors,
            "answers": [r[2] for r in results]}


async def health_burst(url, count=100, timeout=60):
    import httpx

    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=count)) as client:
        start = time.monotonic()
        results = await asyncio.gather(*(client.get(url + "/health", timeout=timeout)
                                         for _ in range(count)), return_exceptions=True)
        wall = time.monotonic() - start
    ok = sum(1 for r in results if not isinstance(r, Exception) and r.status_code == 200)
    return {"health_requests": count, "health_ok": ok, "health_wall_s": round(wall, 3)}


def run_server_levels(name, model, pythonpath, args, rows):
    port = free_port()
    process = start_server(model, pythonpath, port, args.server_args)
    url = f"http://127.0.0.1:{port}"
    try:
        report = {"server": name, "pythonpath": pythonpath,
                  **asyncio.run(health_burst(url))}
        alone = None
        if args.check_answers:
            alone = asyncio.run(level(url, rows, 1, len(rows), args.timeout))["answers"]
        report["levels"] = []
        for concurrency in args.concurrency:
            result = asyncio.run(level(url, rows, concurrency, args.requests, args.timeout))
            if alone is not None:
                expected = [alone[i % len(rows)] for i in range(args.requests)]
                result["answers_equal_alone"] = sum(
                    1 for got, want in zip(result["answers"], expected)
                    if got is not None and got == want)
            del result["answers"]
            report["levels"].append(result)
            print(f"{name:8s} c={concurrency:3d}  {result['requests_per_s']:7.3f} req/s  "
                  f"p50 {result['p50_s']} s  p95 {result['p95_s']} s  ok {result['ok']}/"
                  f"{result['requests']}  errors {result['errors']}"
                  + (f"  equal to alone {result['answers_equal_alone']}/{result['ok']}"
                     if "answers_equal_alone" in result else ""), flush=True)
        print(f"{name:8s} 100 x /health: {report['health_ok']} ok in "
              f"{report['health_wall_s']} s", flush=True)
        return report
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="packaged model folder")
    parser.add_argument("--manifest", required=True, help="clips to send (JSON manifest)")
    parser.add_argument("--clips", type=int, default=16, help="distinct clips used")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--requests", type=int, default=64, help="requests per level")
    parser.add_argument("--timeout", type=float, default=300.0, help="per request, seconds")
    parser.add_argument("--compare_pythonpath", default=None,
                        help="another checkout whose mowe.inference.model_server is measured the same way")
    parser.add_argument("--check_answers", action="store_true",
                        help="compare every answer under load with the one sent alone")
    parser.add_argument("--server_args", nargs=argparse.REMAINDER, default=[],
                        help="options for both servers (last on the line)")
    parser.add_argument("--out", default=None, help="JSON file of the results")
    args = parser.parse_args(argv)
    rows = clips(args.manifest, args.clips)
    reports = [run_server_levels("current", os.path.abspath(args.model), REPO, args, rows)]
    if args.compare_pythonpath:
        reports.append(run_server_levels("compared", os.path.abspath(args.model),
                                         os.path.abspath(args.compare_pythonpath), args,
                                         rows))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump({"command": sys.argv, "reports": reports}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
