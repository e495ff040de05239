"""The seed's example end to end on this package: two Python providers
(the seed's provider script), one Python caller with the seed's stubs."""
import concurrent.futures
import signal
import threading
import time

import pytest

import broach
from BroachRpc import BroachApply, BroachFramework
from BroachRpc.common import GlobalVariable
from threadPool import BroachPool

from conftest import free_port, seed_config, wait_for


def test_seed_example_two_providers_one_caller(procs, tmp_path):
    p1, p2, me = free_port(), free_port(), free_port()
    seed = f"127.0.0.1:{p1}"
    _, a1 = procs.python("seed_provider.py", seed_config(tmp_path / "application1.json", p1, [seed]))
    _, a2 = procs.python("seed_provider.py", seed_config(tmp_path / "application3.json", p2, [seed]))
    # The caller: rpcTimeOut 1 s so that the long-running work07 times out fast.
    node = BroachFramework.run(seed_config(tmp_path / "application2.json", me, [seed], rpc_timeout=1))
    try:
        @BroachApply.rpcCall(name="work00")
        def t0(*args, **kwargs):
            pass

        @BroachApply.rpcCall(name="work01")
        def t1(*args, **kwargs):
            pass

        @BroachApply.rpcCall(name="work02")
        def t2(*args, **kwargs):
            pass

        @BroachApply.rpcCall(name="work07")
        def t7(*args, **kwargs):
            pass

        @BroachApply.rpcCall(name="greet")
        def greet(*args, **kwargs):
            pass

        wait_for(lambda: len(node.routes().get("work01", [])) == 2, what="both providers in the routes")
        # Calls spread over both providers.
        assert {t0() for _ in range(10)} == {a1, a2}
        assert t1(1, 2) == 3
        assert t1("a", "b") == "ab"
        assert greet("seed", punctuation="?") == "hello seed?"  # keyword arguments, Python to Python
        # work02 is provided nowhere: "not found", an Exception as in the seed.
        with pytest.raises(broach.NotFound) as e:
            t2(1, 2)
        assert isinstance(e.value, Exception) and e.value.code == 5 and "work02" in str(e.value)
        # work07 outlives rpcTimeOut (1 s): each call ends call_timeout on time.
        for _ in range(3):
            t_start = time.monotonic()
            with pytest.raises(broach.CallTimeout):
                t7()
            assert time.monotonic() - t_start < 2.0
        # The seed's route table and a local route, called in-process.
        @BroachApply.rpcRoute()
        def local_double(x):
            return 2 * x

        assert GlobalVariable.LocalRoutes["local_double"] is local_double
        assert node.address in GlobalVariable.FuncRouteRpc["local_double"]
        assert sorted(GlobalVariable.FuncRouteRpc["work01"]) == sorted([a1, a2])
        assert "work01" in str(GlobalVariable.FuncRouteRpc)

        @BroachApply.rpcCall(name="local_double")
        def d(*args, **kwargs):
            pass

        # The route table is rebuilt just after a service is added.
        wait_for(lambda: node.address in node.routes().get("local_double", []), what="the local route")
        assert d(21) == 42
        assert node.stats()["calls"]["local"] >= 1
    finally:
        BroachFramework.stop()


def test_a_provider_script_keeps_serving_and_sigterm_stops_it(procs, tmp_path):
    port = free_port()
    p, addr = procs.python("seed_provider.py", seed_config(tmp_path / "a.json", port, [f"127.0.0.1:{port}"]))
    with broach.Node(json='{"logLevel":"warn","params":{"rpcIp":"127.0.0.1","rpcPort":0}}') as n:
        assert n.call("work01", 2, 3, to=addr) == 5  # the script's main code has long ended
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=20) == 0


def test_seed_pool_rules_on_the_cpp_pool():
    # isExcInfo False: a full pool runs the task on the submitting thread.
    gate = threading.Event()
    pool = BroachPool.Pool(core=1, threadMax=1, keepAliveTime=1,
                           queue=BroachPool.ArrayQueue(queueMax=1, isExcInfo="False", createThreadThreshold=0),
                           poolName="t")
    blocked = pool.submit(gate.wait)
    wait_for(lambda: pool.stats()["idle"] == 0 and pool.stats()["queued"] == 0, what="the worker busy")
    queued = pool.submit(lambda: threading.current_thread().name)
    here = pool.submit(lambda: threading.get_ident())
    assert here.result(timeout=5) == threading.get_ident()  # caller-runs
    gate.set()
    assert blocked.result(timeout=5) is True
    assert queued.result(timeout=5) != threading.current_thread().name
    assert pool.stats()["caller_ran"] == 1
    pool.shutdown()
    # isExcInfo True: refused with broach.QueueFull.
    gate2 = threading.Event()
    strict = BroachPool.Pool(core=1, threadMax=1, keepAliveTime=1,
                             queue=BroachPool.ArrayQueue(queueMax=1, isExcInfo=True, createThreadThreshold=0))
    first = strict.submit(gate2.wait)
    wait_for(lambda: strict.stats()["idle"] == 0 and strict.stats()["queued"] == 0, what="the worker busy")
    second = strict.submit(lambda: "queued")
    with pytest.raises(broach.QueueFull):
        strict.submit(lambda: None)
    gate2.set()
    assert first.result(timeout=5) is True
    assert second.result(timeout=5) == "queued"
    # A task's exception reaches its future.
    f = strict.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        f.result(timeout=5)
    assert isinstance(f, concurrent.futures.Future)
    strict.shutdown()
