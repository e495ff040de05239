import json
import os
import socket
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed_config(path, port, seeds, rpc_timeout=6, pool=None):
    """The seed's config file format, unchanged."""
    cfg = {
        "name": "BroachRpc", "version": "1.0.0", "logLevel": "warn",
        "params": {
            "rpcPort": port, "rpcIp": "127.0.0.1", "clusterAddress": seeds,
            "rpcTimeOut": rpc_timeout, "udpTimeOut": 3,
            "threadPool": pool or {"core": 3, "threadMax": 15, "keepAliveTime": 9, "queueMax": 1000,
                                   "isExcInfo": "False", "createThreadThreshold": 2},
        },
    }
    with open(path, "w") as f:
        json.dump(cfg, f)
    return str(path)


def wait_for(cond, timeout=20.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Procs:
    def __init__(self):
        self.procs = []

    def start(self, *argv):
        p = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=dict(os.environ))
        self.procs.append(p)
        return p

    def python(self, script, *args):
        p = self.start(sys.executable, os.path.join(HERE, script), *args)
        line = p.stdout.readline()
        assert line.startswith("ready"), f"{script} did not start: {line!r}"
        return p, line.split()[1]

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()


@pytest.fixture
def procs():
    ps = Procs()
    yield ps
    ps.stop()


def broach_bin():
    return os.path.join(os.environ.get("BROACH_BIN", ""), "broach")
