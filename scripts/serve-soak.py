#!/usr/bin/env python3
"""Fault soak of `varps serve`, on loopback only, bounded in requests and time.

Starts the server on the tiny model with a token file, warms it up, then
sends --requests requests from --clients concurrent clients, a fixed mix
drawn from a seeded generator:

  png, tokens       well-formed and authorised: 200 with the image (or the
                    tokens) `varps generate` gives for it, byte for byte
  slow              the same, its bytes trickled in 40 ms apart: 200, right image
  deadline          well-formed with "timeout_ms" 1..30: 200 with the right
                    image, 503 (deadline passed while queued) or 504 (while
                    generating)
  bad-json          400;  out-of-range  400 naming the field
  oversized         413;  no-token 401;  wrong-token 403
  hang-up           the whole request, then the connection closed before
                    the answer: withdrawn (499) or finished (200)
  half-request      half the body, then closed: 400
  silent            half the headers, then silence: the server drops it
                    after --io-timeout-s (400)

then SIGTERM. It fails unless: every well-formed authorised request got
its image, every bad one its code, the server never died and exited 0,
its resident memory in the last quarter of the load is within 10 % of the
first quarter's, and /metrics adds up: each request counted once by code,
499 = withdrawn on disconnect, 503/504 = withdrawn on deadline while queued
/running, images generated - discarded = POSTs answered 200, and withdrawn
while running = images stopped + images discarded.

Example (the short form the test command runs):
  scripts/serve-soak.py --varps build/varps --requests 2000 --clients 32
"""
import argparse
import collections
import json
import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

TOKEN = "soak-token"
KINDS = [  # (kind, weight)
    ("png", 50), ("tokens", 10), ("slow", 2), ("deadline", 6), ("bad-json", 5), ("out-of-range", 3),
    ("oversized", 3), ("no-token", 3), ("wrong-token", 3), ("hang-up", 9), ("half-request", 4), ("silent", 2)]
POOL = 100  # distinct (class, seed) pairs of the well-formed requests: class k % 10, seed SEED0 + k
SEED0 = 1000
WARMUP = 32  # well-formed requests before the load and the memory samples


class Failure(Exception):
    pass


def http_request(method, path, body=b"", token=TOKEN, extra=""):
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    if token is not None:
        head += f"Authorization: Bearer {token}\r\n"
    if method == "POST":
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + extra + "\r\n").encode() + body


def read_answer(sock):
    """(status, headers, body) of the answer on a Connection: close socket."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head:
        return 0, {}, b""
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def exchange(port, payload, trickle=0.0, timeout=60):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        if trickle:
            for i in range(0, len(payload), 16):
                s.sendall(payload[i:i + 16])
                time.sleep(trickle)
        else:
            s.sendall(payload)
        return read_answer(s)


class Expected:
    """What `varps generate` gives for the pool of well-formed requests."""

    def __init__(self, varps, folder):
        classes = ",".join(str(k % 10) for k in range(POOL))
        subprocess.run([varps, "generate", "--preset", "tiny", "--class", classes, "--seed", str(SEED0), "--out",
                        folder, "--tokens-out", os.path.join(folder, "tokens.json"), "--quiet"], check=True)
        out = pathlib.Path(folder)
        self.png = [(out / f"{k:06d}.png").read_bytes() for k in range(POOL)]
        self.tokens = [img["tokens"] for img in json.loads((out / "tokens.json").read_text())["images"]]


def good_body(k, **more):
    return json.dumps({"class": k % 10, "seed": SEED0 + k, **more}).encode()


def one_request(port, kind, rng, expected, io_timeout):
    """(kind, status, problem or None)."""
    k = rng.randrange(POOL)
    if kind in ("png", "slow", "deadline"):
        more = {"timeout_ms": rng.randint(1, 30)} if kind == "deadline" else {}
        status, _, body = exchange(port, http_request("POST", "/v1/generate", good_body(k, **more)),
                                   trickle=0.04 if kind == "slow" else 0.0)
        if status == 200:
            return kind, status, None if body == expected.png[k] else f"image {k} differs from generate's"
        if kind == "deadline" and status in (503, 504) and b"deadline" in body:
            return kind, status, None
        return kind, status, f"answered {status}: {body[:200]!r}"
    if kind == "tokens":
        status, _, body = exchange(port, http_request("POST", "/v1/generate", good_body(k, format="tokens")))
        if status != 200:
            return kind, status, f"answered {status}: {body[:200]!r}"
        return kind, status, None if json.loads(body)["images"][0]["tokens"] == expected.tokens[k] else \
            f"tokens {k} differ from generate's"
    refusals = {
        "bad-json": (b'{"class": 3, "seed": ', TOKEN, 400, b"malformed JSON"),
        "out-of-range": (b'{"class": 3, "top_p": 7}', TOKEN, 400, b"top_p"),
        "oversized": (b" " * 70000 + b"{}", TOKEN, 413, b"bytes"),
        "no-token": (good_body(k), None, 401, b"Bearer"),
        "wrong-token": (good_body(k), "not-" + TOKEN, 403, b"token"),
    }
    if kind in refusals:
        body, token, want, needle = refusals[kind]
        status, _, answer = exchange(port, http_request("POST", "/v1/generate", body, token=token))
        ok = status == want and needle in answer and answer.startswith(b"{")
        return kind, status, None if ok else f"answered {status}, not {want}: {answer[:200]!r}"
    if kind == "hang-up":
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(http_request("POST", "/v1/generate", good_body(k)))
            time.sleep(rng.uniform(0, 0.02))
        return kind, None, None
    if kind == "half-request":
        payload = http_request("POST", "/v1/generate", good_body(k))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(payload[:len(payload) - 8])
            time.sleep(rng.uniform(0, 0.02))
        return kind, None, None
    if kind == "silent":
        with socket.create_connection(("127.0.0.1", port), timeout=io_timeout + 10) as s:
            s.sendall(b"POST /v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            t0 = time.monotonic()
            status, _, _ = read_answer(s)  # the server's 400, or nothing, as it drops the connection
            waited = time.monotonic() - t0
        ok = io_timeout * 0.5 <= waited <= io_timeout + 5
        return kind, None, None if ok else f"dropped after {waited:.1f} s, --io-timeout-s {io_timeout}"
    raise ValueError(kind)


def metrics(port):
    status, _, body = exchange(port, http_request("GET", "/metrics"))
    if status != 200:
        raise Failure(f"GET /metrics answered {status}")
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise Failure("the server has no VmRSS")


def soak(args, folder):
    expected = Expected(args.varps, os.path.join(folder, "expected"))
    tokens = os.path.join(folder, "tokens")
    with open(tokens, "w") as f:
        f.write(TOKEN + "\n")
    err_path = os.path.join(folder, "serve.err")
    err = open(err_path, "w")
    server = subprocess.Popen([args.varps, "serve", "--preset", "tiny", "--host", "127.0.0.1", "--port", "0",
                               "--token-file", tokens, "--max-batch", "8", "--max-wait-ms", "2", "--max-queue", "256",
                               "--max-connections", str(args.clients + 16), "--io-timeout-s", str(args.io_timeout),
                               "--threads", "2", "-q"], stdout=subprocess.DEVNULL, stderr=err)
    try:
        port = 0
        for _ in range(200):
            text = pathlib.Path(err_path).read_text()
            if "listening on http://127.0.0.1:" in text:
                port = int(text.split("listening on http://127.0.0.1:")[1].split()[0])
                break
            if server.poll() is not None:
                raise Failure(f"the server exited {server.returncode}: {text.strip()}")
            time.sleep(0.1)
        if not port:
            raise Failure("the server printed no address in 20 s")
        for k in range(WARMUP):
            if exchange(port, http_request("POST", "/v1/generate", good_body(k)))[0] != 200:
                raise Failure(f"warm-up request {k} was not answered 200")

        rng_seed = random.Random(args.seed)
        kinds = [kind for kind, w in KINDS for _ in range(w)]
        plan = [(rng_seed.choice(kinds), rng_seed.randrange(1 << 30)) for _ in range(args.requests)]
        cursor = iter(range(args.requests))
        lock = threading.Lock()
        results = []
        deadline = time.monotonic() + args.time_limit

        def client():
            while time.monotonic() < deadline:
                with lock:
                    i = next(cursor, None)
                if i is None:
                    return
                kind, seed = plan[i]
                try:
                    r = one_request(port, kind, random.Random(seed), expected, args.io_timeout)
                except OSError as e:
                    r = (kind, None, f"{type(e).__name__}: {e}")
                with lock:
                    results.append(r)

        rss = []
        done = threading.Event()

        def sample_rss():
            while not done.is_set():
                rss.append(rss_kib(server.pid))
                done.wait(0.1)

        sampler = threading.Thread(target=sample_rss)
        t0 = time.monotonic()
        sampler.start()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        sampler.join()
        seconds = time.monotonic() - t0
        if len(results) < args.requests:
            raise Failure(f"only {len(results)} of {args.requests} requests in the {args.time_limit} s limit")
        if server.poll() is not None:
            raise Failure(f"the server died during the load (exit {server.returncode})")

        time.sleep(0.5)  # the last hang-ups' withdrawals
        m = metrics(port)  # counts every request before it, not itself
        problems = [f"{kind}: {p}" for kind, _, p in results if p]
        by_kind = collections.Counter(kind for kind, _, _ in results)
        codes = collections.Counter((kind, status) for kind, status, _ in results if status is not None)

        def code(c):
            return int(m.get(f'varps_requests_total{{code="{c}"}}', 0))

        def withdrawn(reason, stage):
            return int(m.get(f'varps_requests_withdrawn_total{{reason="{reason}",stage="{stage}"}}', 0))

        post_200 = sum(n for (kind, status), n in codes.items() if status == 200)
        checks = [
            ("every request counted once by code",
             sum(int(v) for k, v in m.items() if k.startswith("varps_requests_total")),
             WARMUP + len(results)),
            ("answered 200, or withdrawn (499) when the client hung up", code(200) + code(499),
             WARMUP + post_200 + by_kind["hang-up"]),
            ("499 = withdrawn on disconnect", code(499), withdrawn("disconnect", "queued") + withdrawn("disconnect", "running")),
            ("400 = bad JSON, out of range, half requests, silent", code(400),
             by_kind["bad-json"] + by_kind["out-of-range"] + by_kind["half-request"] + by_kind["silent"]),
            ("401 = no token", code(401), by_kind["no-token"]),
            ("403 = wrong token", code(403), by_kind["wrong-token"]),
            ("413 = oversized", code(413), by_kind["oversized"]),
            ("503 = deadline passed in the queue", code(503), withdrawn("deadline", "queued")),
            ("503 seen by the clients", code(503), codes[("deadline", 503)]),
            ("504 = deadline passed while generating", code(504), withdrawn("deadline", "running")),
            ("504 seen by the clients", code(504), codes[("deadline", 504)]),
            ("images generated - discarded = POSTs answered 200",
             int(m["varps_images_total"] - m["varps_images_discarded_total"]), code(200)),
            ("withdrawn while running = images stopped + discarded",
             withdrawn("disconnect", "running") + withdrawn("deadline", "running"),
             int(m["varps_images_stopped_total"] + m["varps_images_discarded_total"])),
        ]
        problems += [f"/metrics: {name}: {got} != {want}" for name, got, want in checks if got != want]
        q = max(1, len(rss) // 4)
        first, last = sum(rss[:q]) / q, sum(rss[-q:]) / q
        growth = last / first - 1
        if growth > 0.10 and not args.no_rss_check:
            problems.append(f"resident memory grew {growth:+.1%} from the first quarter to the last")

        server.send_signal(signal.SIGTERM)
        try:
            rc = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            rc = None
            problems.append("the server did not exit within 30 s of SIGTERM")
        if rc not in (0, None):
            problems.append(f"the server exited {rc} on SIGTERM")

        print(f"soak: {len(results)} requests from {args.clients} clients in {seconds:.1f} s "
              f"({len(results) / seconds:.0f}/s), seed {args.seed}")
        print("| kind | sent | answers |")
        print("| --- | ---: | --- |")
        for kind, _ in KINDS:
            answers = ", ".join(f"{s}: {n}" for (k, s), n in sorted(codes.items()) if k == kind) or "-"
            print(f"| {kind} | {by_kind[kind]} | {answers} |")
        print(f"withdrawn: disconnect {withdrawn('disconnect', 'queued')} queued + "
              f"{withdrawn('disconnect', 'running')} running, deadline {withdrawn('deadline', 'queued')} queued + "
              f"{withdrawn('deadline', 'running')} running; images generated {int(m['varps_images_total'])}, "
              f"stopped {int(m['varps_images_stopped_total'])} in {int(m['varps_cohorts_stopped_total'])} cohorts, "
              f"discarded {int(m['varps_images_discarded_total'])}")
        print(f"resident memory: {first / 1024:.1f} MiB in the first quarter, {last / 1024:.1f} MiB in the last "
              f"({growth:+.1%}, {len(rss)} samples{', not checked' if args.no_rss_check else ''}); "
              f"exit on SIGTERM: {rc}")
        for name, got, want in checks:
            print(f"  {'ok ' if got == want else 'BAD'} {name}: {got} (expected {want})")
        return problems
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        err.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--varps", default="build/varps", help="the varps program")
    ap.add_argument("--requests", type=int, default=20000, help="requests after the warm-up (default 20000)")
    ap.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    ap.add_argument("--io-timeout-s", dest="io_timeout", type=int, default=1, help="the server's --io-timeout-s")
    ap.add_argument("--time-limit", type=float, default=900, help="seconds the load may take before it fails")
    ap.add_argument("--seed", type=int, default=1, help="seed of the mix of requests")
    ap.add_argument("--no-rss-check", action="store_true",
                    help="report the resident memory without checking it (under AddressSanitizer, whose quarantine "
                         "keeps freed memory)")
    args = ap.parse_args()
    if args.requests < 1 or args.clients < 1 or args.io_timeout < 1:
        ap.error("--requests, --clients and --io-timeout-s must be at least 1")
    if not os.access(args.varps, os.X_OK):
        ap.error(f"--varps {args.varps}: not an executable program")
    with tempfile.TemporaryDirectory(prefix="varps-soak-") as folder:
        try:
            problems = soak(args, folder)
        except Failure as e:
            problems = [str(e)]
    for p in problems[:20]:
        print("FAIL:", p, file=sys.stderr)
    if len(problems) > 20:
        print(f"FAIL: ... and {len(problems) - 20} more", file=sys.stderr)
    print("soak: " + ("passed" if not problems else f"FAILED ({len(problems)} problems)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
