#!/usr/bin/env python3
"""Throughput and latency of `varps serve` against concurrency, for the
batching server joining requests at scale boundaries (--join next-scale),
the same joining only between batches (--join next-batch), and the same
server with --max-batch 1, in one run on one machine.

For each server configuration: start `varps serve --port 0`, warm it up, then
for each concurrency C send --requests requests from C client threads (each
thread one request at a time, classes and seeds varying), and measure the
wall time and every request's latency (send to last byte). Every answer must
be 200 with a PNG, or the script fails. Writes DIR/serve-bench.json, .md and
.svg (throughput and p50 latency against concurrency) and prints the table.

    scripts/bench-serve.py --varps build/varps --model "--preset tiny" --concurrency 1,4,16,64 \\
        --requests 256 --out out-serve-tiny
    scripts/bench-serve.py --varps build/varps --model "--preset d16" --concurrency 1,4,16 \\
        --requests 16 --max-batch 16 --out out-serve-d16

Only the Python standard library is used.
"""
import argparse
import json
import os
import platform
import random
import re
import shlex
import statistics
import subprocess
import sys
import threading
import time
import urllib.request


def start_server(varps, model_args, max_batch, join, max_wait_ms, threads):
    cmd = [varps, "serve", "--port", "0", "--max-batch", str(max_batch), "--join", join,
           "--max-wait-ms", str(max_wait_ms), "--max-queue", "256", "-q", *shlex.split(model_args)]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    m = re.search(r"listening on http://([^:]+):(\d+)", line)
    if not m:
        proc.kill()
        sys.exit(f"bench-serve: the server did not start: {line.strip()} {proc.stderr.read()[-500:]}")
    # keep draining stderr so the server never blocks on it
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    return proc, f"http://{m.group(1)}:{m.group(2)}"


def post(url, body):
    t0 = time.perf_counter()
    req = urllib.request.Request(url + "/v1/generate", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=3600) as r:
        data = r.read()
        if r.status != 200 or not data.startswith(b"\x89PNG"):
            raise RuntimeError(f"answer {r.status}, {len(data)} bytes")
    return time.perf_counter() - t0


def load(url, concurrency, requests, seed0):
    latencies, errors = [], []
    lock = threading.Lock()
    counter = iter(range(requests))

    def client():
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            try:
                lat = post(url, {"class": i % 10, "seed": seed0 + i})
                with lock:
                    latencies.append(lat)
            except Exception as e:  # noqa: BLE001 - every failure is reported
                with lock:
                    errors.append(str(e))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return wall, latencies, errors


def open_load(url, rate, requests, seed0, rng):
    """Open-loop load: requests arrive at Poisson times of `rate` per second,
    whatever the answers; a request's latency runs from its arrival time."""
    latencies, errors = [], []
    lock = threading.Lock()
    t0 = time.perf_counter()
    arrivals, t = [], 0.0
    for _ in range(requests):
        t += rng.expovariate(rate)
        arrivals.append(t)

    def one(i, at):
        try:
            post(url, {"class": i % 10, "seed": seed0 + i})
            with lock:
                latencies.append(time.perf_counter() - (t0 + at))
        except Exception as e:  # noqa: BLE001 - every failure is reported
            with lock:
                errors.append(str(e))

    threads = []
    for i, at in enumerate(arrivals):
        delay = t0 + at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        threads.append(threading.Thread(target=one, args=(i, at)))
        threads[-1].start()
    for th in threads:
        th.join()
    return time.perf_counter() - t0, latencies, errors


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def summary(server, load_key, load_value, wall, latencies):
    """One row of the report: a server under one load level."""
    return {"server": server, load_key: load_value, "requests": len(latencies), "wall_s": wall,
            "images_per_s": len(latencies) / wall, "p50_ms": 1e3 * pct(latencies, 50),
            "p90_ms": 1e3 * pct(latencies, 90), "p99_ms": 1e3 * pct(latencies, 99),
            "mean_ms": 1e3 * statistics.mean(latencies)}


def svg(rows, path, key="concurrency", title="images/s against concurrency (labels: p50 latency)"):
    w, h, pad = 640, 300, 50
    conc = sorted({r[key] for r in rows})
    xs = {c: pad + i * (w - 2 * pad) / max(1, len(conc) - 1) for i, c in enumerate(conc)}
    top = max(r["images_per_s"] for r in rows) * 1.1 or 1
    colors = {}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
             f'font-size="11"><rect width="{w}" height="{h}" fill="white"/>',
             f'<text x="{pad}" y="18">{title}</text>',
             f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#888"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#888"/>',
             f'<text x="4" y="{pad + 4}">{top:.3g}</text><text x="20" y="{h - pad}">0</text>']
    for c in conc:
        parts.append(f'<text x="{xs[c] - 6}" y="{h - pad + 16}">{c}</text>')
    for i, name in enumerate(dict.fromkeys(r["server"] for r in rows)):
        colors[name] = ["#1f77b4", "#d62728", "#2ca02c"][i % 3]
        pts = [(xs[r[key]], h - pad - r["images_per_s"] / top * (h - 2 * pad), r)
               for r in rows if r["server"] == name]
        parts.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>'
                     % (colors[name], " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in pts)))
        for x, y, r in pts:
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colors[name]}"/>'
                         f'<text x="{x + 4:.1f}" y="{y - 4:.1f}" fill="{colors[name]}">{r["p50_ms"]:.0f} ms</text>')
        parts.append(f'<text x="{w - pad - 220}" y="{pad + 14 * i}" fill="{colors[name]}">{name}</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--varps", default="build/varps", help="the varps program")
    ap.add_argument("--model", default="--preset tiny", help="model flags for varps serve (quoted)")
    ap.add_argument("--concurrency", default="1,4,16,64", help="comma list of client counts")
    ap.add_argument("--requests", type=int, default=256, help="requests per concurrency level")
    ap.add_argument("--max-batch", type=int, default=16, help="--max-batch of the batching server")
    ap.add_argument("--max-wait-ms", type=int, default=5)
    ap.add_argument("--servers", default="next-scale,next-batch,one",
                    help="comma list of server configurations: next-scale, next-batch (both with --max-batch), "
                         "one (--max-batch 1)")
    ap.add_argument("--rates", default="",
                    help="comma list of open-loop arrival rates (requests/s, Poisson), measured after the "
                         "concurrency levels; empty: none")
    ap.add_argument("--warmup", type=int, default=8, help="untimed requests before the first level")
    ap.add_argument("--threads", type=int, default=0, help="--threads of the server (0: all cores)")
    ap.add_argument("--out", required=True, help="output directory")
    a = ap.parse_args()
    conc = [int(c) for c in a.concurrency.split(",") if c]
    rates = [float(r) for r in a.rates.split(",") if r]
    if not conc and not rates:
        sys.exit("bench-serve: nothing to measure: give --concurrency or --rates")
    os.makedirs(a.out, exist_ok=True)
    rows, open_rows = [], []
    configs = {"next-scale": (f"join next-scale, max-batch {a.max_batch}", a.max_batch, "next-scale"),
               "next-batch": (f"join next-batch, max-batch {a.max_batch}", a.max_batch, "next-batch"),
               "one": ("max-batch 1", 1, "next-batch")}
    servers = a.servers.split(",")
    for s in servers:
        if s not in configs:
            sys.exit(f"bench-serve: --servers {s}: must be one of {', '.join(configs)}")
    for name, mb, join in (configs[s] for s in servers):
        proc, url = start_server(a.varps, a.model, mb, join, a.max_wait_ms, a.threads)
        try:
            load(url, min(4, max(conc or [4])), a.warmup, 10**6)  # untimed
            for c in conc:
                wall, lat, errors = load(url, c, a.requests, 0)
                if errors:
                    sys.exit(f"bench-serve: {len(errors)} requests failed ({name}, concurrency {c}): {errors[0]}")
                rows.append(summary(name, "concurrency", c, wall, lat))
                print(f"bench-serve: {name}, concurrency {c}: {rows[-1]['images_per_s']:.2f} images/s", file=sys.stderr)
            for rate in rates:
                # the same arrival times for every server
                wall, lat, errors = open_load(url, rate, a.requests, 0, random.Random(int(rate * 1000)))
                if errors:
                    sys.exit(f"bench-serve: {len(errors)} requests failed ({name}, rate {rate}): {errors[0]}")
                open_rows.append(summary(name, "rate", rate, wall, lat))
                print(f"bench-serve: {name}, rate {rate}/s: p50 {open_rows[-1]['p50_ms']:.1f} ms", file=sys.stderr)
        finally:
            proc.terminate()
            proc.wait(timeout=600)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"
    doc = {"machine": machine, "model": a.model, "max_wait_ms": a.max_wait_ms, "rows": rows, "open_loop": open_rows}
    with open(os.path.join(a.out, "serve-bench.json"), "w") as f:
        json.dump(doc, f, indent=2)
    lines = [f"machine: {machine}; model: `{a.model}`; {a.requests} requests per level; max-wait {a.max_wait_ms} ms"]
    if rows:
        lines += ["", "Closed loop (C clients, each sending its next request when the last is answered):", "",
                  "| server | clients | images/s | p50 ms | p90 ms | p99 ms |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for r in rows:
            lines.append(f"| {r['server']} | {r['concurrency']} | {r['images_per_s']:.2f} | {r['p50_ms']:.1f} | "
                         f"{r['p90_ms']:.1f} | {r['p99_ms']:.1f} |")
    if open_rows:
        lines += ["", "Open loop (Poisson arrivals at a rate, the same arrival times for every server; latency "
                  "from arrival):", "", "| server | requests/s | images/s | p50 ms | p90 ms | p99 ms |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for r in open_rows:
            lines.append(f"| {r['server']} | {r['rate']:g} | {r['images_per_s']:.2f} | {r['p50_ms']:.1f} | "
                         f"{r['p90_ms']:.1f} | {r['p99_ms']:.1f} |")
    md = "\n".join(lines) + "\n"
    with open(os.path.join(a.out, "serve-bench.md"), "w") as f:
        f.write(md)
    if rows:
        svg(rows, os.path.join(a.out, "serve-bench.svg"))
    if open_rows:
        svg(open_rows, os.path.join(a.out, "serve-bench-open.svg"), "rate",
            "images/s against offered requests/s (labels: p50 latency)")
    print(md)


if __name__ == "__main__":
    main()
