"""py_bench: BroachRpc's echo from Python, measured from the caller.

    py_bench.py server [--cpu C]
        a Python node providing echo(s) -> s (the worker pool, as in the seed);
        prints "listening on IP:PORT"; runs until SIGTERM.
    py_bench.py echo --to IP:PORT [--size 16] [--inflight 1] [--seconds 5] [--cpu C] [--label L]
        1 in flight: a loop of blocking node.call; more: that many asyncio
        tasks, each awaiting node.call_async in a loop. One JSON line, like
        bench_rpc's (calls_per_s, p50_us, p99_us, ...).

Run with PYTHONPATH=<build>/python and Debian's /usr/bin/python3.
"""
import argparse
import asyncio
import json
import os
import signal
import sys
import time

import broach

CONFIG = '{"logLevel":"warn","params":{"rpcIp":"127.0.0.1","rpcPort":0}}'


def pin(cpu):
    if cpu is not None and cpu >= 0:
        os.sched_setaffinity(0, {cpu})


def percentile(sorted_us, q):
    if not sorted_us:
        return 0.0
    return sorted_us[min(len(sorted_us) - 1, int(q * len(sorted_us)))]


def serve(args):
    node = broach.Node(json=CONFIG)
    node.provide("echo", lambda s: s)
    print("listening on", node.address, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)  # until SIGTERM or Ctrl-C
    except KeyboardInterrupt:
        pass
    finally:
        node.close()


def run_client(args):
    node = broach.Node(json=CONFIG)
    payload = "x" * args.size
    lat = []
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    deadline = t0 + args.seconds
    errors = 0
    if args.inflight == 1:
        call = node.call
        while True:
            s = time.perf_counter()
            if s >= deadline:
                break
            try:
                call("echo", payload, to=args.to)
            except broach.BroachError:
                errors += 1
            lat.append(time.perf_counter() - s)
    else:
        async def worker():
            nonlocal errors
            while True:
                s = time.perf_counter()
                if s >= deadline:
                    return
                try:
                    await node.call_async("echo", payload, to=args.to)
                except broach.BroachError:
                    errors += 1
                lat.append(time.perf_counter() - s)

        async def main():
            await asyncio.gather(*[worker() for _ in range(args.inflight)])

        asyncio.run(main())
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    node.close()
    us = sorted(x * 1e6 for x in lat)
    calls = len(us)
    print(json.dumps(separators=(",", ":"), obj={
        "bench": "py", "workload": f"echo{args.size}_inflight{args.inflight}_{args.label}",
        "size": args.size, "inflight": args.inflight, "seconds": round(elapsed, 3),
        "calls": calls, "calls_total": calls, "errors": errors, "calls_per_s": round(calls / elapsed, 1),
        "p50_us": round(percentile(us, 0.50), 2), "p90_us": round(percentile(us, 0.90), 2),
        "p99_us": round(percentile(us, 0.99), 2),
        "client_cpu_us_per_call": round(cpu * 1e6 / calls, 2) if calls else 0,
    }), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["server", "echo"])
    p.add_argument("--to")
    p.add_argument("--size", type=int, default=16)
    p.add_argument("--inflight", type=int, default=1)
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--cpu", type=int)
    p.add_argument("--label", default="py")
    args = p.parse_args()
    pin(args.cpu)
    if args.mode == "server":
        serve(args)
    else:
        if not args.to:
            p.error("echo needs --to IP:PORT")
        run_client(args)


if __name__ == "__main__":
    main()
