"""broach.Node: calls, errors, asyncio, the GIL, fork, and C++ interop."""
import asyncio
import os
import threading
import time

import pytest

import broach

from conftest import broach_bin, wait_for

LOOPBACK = '{"logLevel":"warn","params":{"rpcIp":"127.0.0.1","rpcPort":0,"rpcTimeOut":5}}'


@pytest.fixture
def pair():
    server, client = broach.Node(json=LOOPBACK), broach.Node(json=LOOPBACK)
    yield server, client
    client.close()
    server.close()


def test_values_cross_as_msgpack(pair):
    server, client = pair
    server.provide("echo", lambda v: v)
    for v in [None, True, False, 0, -1, 2**63 - 1, 2**64 - 1, -2**63, 1.5, "", "héllo", b"\x00\xff",
              [1, [2, "x"]], {"a": 1, "b": [None, {"c": b"d"}]}]:
        assert client.call("echo", v, to=server.address) == v
    assert client.call("echo", (1, 2), to=server.address) == [1, 2]  # tuples arrive as lists
    with pytest.raises(TypeError):
        client.call("echo", object(), to=server.address)


def test_a_traced_call_is_recorded_by_its_provider(pair):
    server, client = pair
    server.provide("add", lambda a, b: a + b)
    assert client.call("add", 1, 2, to=server.address) == 3  # not traced
    assert client.call("add", 2, 3, to=server.address, trace=True) == 5

    async def traced_async():
        return await client.call_async("add", 3, 4, to=server.address, trace=True)

    assert asyncio.run(traced_async()) == 7
    rpcz = client.call("__broach.rpcz", to=server.address)
    assert len(rpcz["traces"]) == 2
    for t in rpcz["traces"]:
        (span,) = t["spans"]
        assert span["kind"] == "serve" and span["service"] == "add" and span["outcome"] == "ok"
        assert span["peer"] == client.address


def test_ipv6_loopback_nodes(tmp_path):
    cfg = '{"logLevel":"warn","params":{"rpcIp":"::1","rpcPort":0,"rpcTimeOut":5}}'
    try:
        server, client = broach.Node(json=cfg), broach.Node(json=cfg)
    except broach.BroachError as e:  # a host without ::1
        pytest.skip(str(e))
    try:
        assert server.address.startswith("[::1]:")
        server.provide("add", lambda a, b: a + b)
        assert client.call("add", 2, 3, to=server.address) == 5
    finally:
        client.close()
        server.close()


def test_errors_are_typed(pair):
    server, client = pair

    @server.provide()
    def boom():
        raise KeyError("missing")

    with pytest.raises(broach.RemoteError) as e:
        client.call("boom", to=server.address)
    assert e.value.code == 7 and "KeyError" in str(e.value)
    with pytest.raises(broach.NotFound):
        client.call("nope", to=server.address)
    server.provide("slow", lambda: time.sleep(2))
    t0 = time.monotonic()
    with pytest.raises(broach.CallTimeout):
        client.call("slow", to=server.address, timeout=0.3)
    assert time.monotonic() - t0 < 1.5
    with pytest.raises(broach.BadConfig):
        broach.Node(json='{"params":{"rpcPort":"x"}}')
    # A provider whose process is gone: its port answers ICMP port
    # unreachable and the call ends at once ("may have run"), not after udpTimeOut.
    gone = broach.Node(json=LOOPBACK)
    gone_at = gone.address
    gone.close()
    t0 = time.monotonic()
    with pytest.raises(broach.PeerGone) as e:
        client.call("add", 1, 2, to=gone_at)
    assert e.value.kind == "peer_gone" and e.value.code == 19
    assert time.monotonic() - t0 < 1.5


def test_blocking_call_releases_the_gil(pair):
    server, client = pair
    server.provide("sleep", lambda s: time.sleep(s) or "ok")
    ticks = []
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.001)

    t = threading.Thread(target=spin)
    t.start()
    before = len(ticks)
    assert client.call("sleep", 0.5, to=server.address) == "ok"
    stop.set()
    t.join()
    assert len(ticks) - before > 50  # the other thread ran during the call


def test_asyncio_calls_and_async_handlers(pair):
    server, client = pair

    @server.provide()
    async def slow_add(x, y):
        await asyncio.sleep(0.2)
        return x + y

    async def main():
        t0 = time.monotonic()
        results = await asyncio.gather(*[client.call_async("slow_add", i, 1, to=server.address)
                                         for i in range(10)])
        elapsed = time.monotonic() - t0
        with pytest.raises(broach.NotFound):
            await client.call_async("nope", to=server.address)
        return results, elapsed

    results, elapsed = asyncio.run(main())
    assert results == [i + 1 for i in range(10)]
    assert elapsed < 1.5  # ten 0.2 s handlers overlapped


def test_fork_child_refuses_the_parents_node(pair):
    server, client = pair
    server.provide("add", lambda a, b: a + b)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            client.call("add", 1, 2, to=server.address)
            msg = b"called"
        except broach.BroachError as e:
            msg = b"refused" if "forked child" in str(e) else b"other"
        os.write(w, msg)
        os._exit(0)
    os.close(w)
    got = os.read(r, 100)
    os.waitpid(pid, 0)
    assert got == b"refused"
    assert client.call("add", 1, 2, to=server.address) == 3  # the parent's node still works


def test_interop_with_a_cpp_node(procs, pair):
    _, client = pair
    exe = broach_bin()
    if not os.path.exists(exe):
        pytest.skip("the broach CLI is not built")
    p = procs.start(exe, "node", "--ip", "127.0.0.1", "--port", "0", "--log-level", "warn")
    line = wait_for(lambda: p.stdout.readline(), what="the C++ node's first line")
    assert line.startswith("listening on "), line
    addr = line.split()[2]
    # Python -> C++
    assert client.call("add", 40, 2, to=addr) == 42
    assert client.call("echo", {"k": [1, "two", None]}, to=addr) == {"k": [1, "two", None]}
    # C++ -> Python (the CLI calls a Python provider)
    server = broach.Node(json=LOOPBACK)
    server.provide("py_concat", lambda a, b: f"{a}{b}")
    import subprocess
    out = subprocess.run([exe, "call", "--to", server.address, "py_concat", '"x"', "7"],
                         capture_output=True, text=True, timeout=30)
    server.close()
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '"x7"'


def test_many_async_calls_and_a_cancelled_one(pair):
    server, client = pair
    server.provide("add", lambda a, b: a + b, run_on_loop=True)
    server.provide("sleep", lambda s: time.sleep(s) or "ok")

    async def main():
        results = await asyncio.gather(*[client.call_async("add", i, i, to=server.address) for i in range(500)])
        # A cancelled await: its completion arrives later and is dropped.
        task = asyncio.ensure_future(client.call_async("sleep", 0.2, to=server.address))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.3)
        after = await client.call_async("add", 1, 1, to=server.address)
        return results, after

    results, after = asyncio.run(main())
    assert results == [2 * i for i in range(500)]
    assert after == 2
    # A second event loop gets its own completion queue.
    assert asyncio.run(client.call_async("add", 2, 2, to=server.address)) == 4


SCRIPT_CTRL_C = r"""
import sys, time, broach
cfg = '{"logLevel":"warn","params":{"rpcIp":"127.0.0.1","rpcPort":0,"rpcTimeOut":60}}'
server, client = broach.Node(json=cfg), broach.Node(json=cfg)
def sleep(s):
    print("started", flush=True)  # the caller is now blocked in the call
    time.sleep(s)
server.provide("sleep", sleep)
try:
    client.call("sleep", 5, to=server.address)
    print("returned", flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""

SCRIPT_EXIT = r"""
import broach
cfg = '{"logLevel":"warn","params":{"rpcIp":"127.0.0.1","rpcPort":0}}'
a, b = broach.Node(json=cfg), broach.Node(json=cfg)
a.provide("add", lambda x, y: x + y)
assert b.call("add", 1, 2, to=a.address) == 3
print("ready", flush=True)
# exits with both nodes running: atexit stops them
"""


def test_ctrl_c_interrupts_a_blocking_call(procs):
    import signal
    import sys
    p = procs.start(sys.executable, "-c", SCRIPT_CTRL_C)
    assert p.stdout.readline().strip() == "started"
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    assert p.stdout.readline().strip() == "interrupted"
    assert time.monotonic() - t0 < 4  # long before the 5 s handler ends
    p.wait(timeout=60)  # exit waits for the running handler


def test_interpreter_exit_with_running_nodes_is_clean(procs):
    import sys
    p = procs.start(sys.executable, "-c", SCRIPT_EXIT)
    assert p.stdout.readline().strip() == "ready"
    assert p.wait(timeout=30) == 0
    assert p.stdout.read() == ""  # no traceback, no warning


def test_a_busy_python_handler_does_not_stall_the_nodes_loop(pair):
    # While a CPU-bound Python handler runs on the provider, its loop (which
    # never takes the GIL) still answers at once: here, "not found" for a
    # service it does not have.
    server, client = pair
    started = threading.Event()

    @server.provide()
    def spin(seconds):
        started.set()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass
        return "done"

    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", client.call("spin", 2.0, to=server.address)))
    t.start()
    assert started.wait(10)
    worst = 0.0
    for _ in range(5):
        t0 = time.monotonic()
        with pytest.raises(broach.NotFound):
            client.call("nothing_here", to=server.address)
        worst = max(worst, time.monotonic() - t0)
    t.join()
    assert result["r"] == "done"
    assert worst < 0.5, worst


def test_a_blocking_call_on_the_loop_thread_is_refused_not_a_hang(pair):
    server, client = pair
    server.provide("add", lambda a, b: a + b)

    def nested():
        # run_on_loop: this runs on the node's loop thread, where waiting
        # for an answer would stop the loop that has to deliver it.
        return server.call("add", 1, 2, to=server.address)

    server.provide("nested", nested, run_on_loop=True)
    t0 = time.monotonic()
    with pytest.raises(broach.RemoteError) as e:
        client.call("nested", to=server.address, timeout=3)
    assert "loop thread would deadlock" in str(e.value)
    assert time.monotonic() - t0 < 2.5
    assert client.call("add", 2, 3, to=server.address) == 5  # the node still serves

    async def coro():
        return 1

    with pytest.raises(ValueError):
        server.provide("coro", coro, run_on_loop=True)


@pytest.mark.parametrize("run_on_loop", [False, True])
def test_a_handler_may_close_its_own_node(run_on_loop):
    server, client = broach.Node(json=LOOPBACK), broach.Node(json=LOOPBACK)
    try:
        server.provide("add", lambda a, b: a + b)

        def quit_():
            server.close()  # from the node's own worker (or loop) thread
            return "bye"

        server.provide("quit", quit_, run_on_loop=run_on_loop)
        assert client.call("quit", to=server.address, timeout=3) == "bye"

        def stopped():
            try:
                client.call("add", 1, 2, to=server.address, timeout=0.5, retry="none")
                return False
            except broach.BroachError:
                return True

        wait_for(stopped, what="the closed node to stop answering")
        with pytest.raises(broach.BroachError):
            server.call("add", 1, 2, to=client.address)  # closed
    finally:
        client.close()
        server.close()


SCRIPT_FORK_COLLECT = """
import gc, os, sys
import broach
from threadPool.BroachPool import Pool
node = broach.Node(json='{"logLevel":"warn","params":{"rpcIp":"127.0.0.1","rpcPort":0}}')
pool = Pool(2, 4, 60)
pool.submit(lambda: 1).result(timeout=10)
pid = os.fork()
if pid == 0:
    # The child lets the inherited node and pool go, and exits normally.
    node.close()
    del node, pool
    gc.collect()
    print("child done", flush=True)
    sys.exit(0)
_, status = os.waitpid(pid, 0)
print("child exit", os.waitstatus_to_exitcode(status), flush=True)
node.close()
"""


def test_a_forked_child_may_drop_the_inherited_node_and_pool(procs):
    import sys
    p = procs.start(sys.executable, "-c", SCRIPT_FORK_COLLECT)
    assert p.wait(timeout=60) == 0
    out = p.stdout.read()
    assert "child done" in out and "child exit 0" in out, out
