"""The seed's thread pool, on BroachRpc's C++ pool (the same rules).

    from threadPool import BroachPool
    pool = BroachPool.Pool(core=3, threadMax=50, keepAliveTime=9,
                           queue=BroachPool.ArrayQueue(queueMax=1000, isExcInfo=False,
                                                       createThreadThreshold=2),
                           poolName="demo")
    future = pool.submit(fn)          # fn() runs on a pool thread

Rules, as in the seed: ``core`` threads always alive, up to ``threadMax``;
extra threads start when more than ``createThreadThreshold`` tasks are
queued and exit after ``keepAliveTime`` seconds idle; at most ``queueMax``
tasks wait; when queue and threads are full, ``isExcInfo`` true refuses the
task (``broach.QueueFull``), false runs it on the submitting thread.
``submit`` returns a ``concurrent.futures.Future`` with fn's result.
"""
import atexit
import concurrent.futures
import weakref

import _broach

from broach.errors import raise_error

__all__ = ["ArrayQueue", "Pool"]

_pools = weakref.WeakSet()


@atexit.register
def _shutdown_all():
    # Before the interpreter finalizes: queued tasks run, threads stop.
    for p in list(_pools):
        try:
            p.shutdown()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def _flag(v, key):
    if isinstance(v, bool):
        return v
    if v in ("True", "true"):
        return True
    if v in ("False", "false"):
        return False
    raise ValueError(f"{key} must be True/False or 'True'/'False'/'true'/'false', got {v!r}")


class ArrayQueue:
    """The pool's bounded queue: ``queueMax``, ``isExcInfo``, ``createThreadThreshold``."""

    def __init__(self, queueMax=1000, isExcInfo=False, createThreadThreshold=2):
        self.queueMax = int(queueMax)
        self.isExcInfo = _flag(isExcInfo, "isExcInfo")
        self.createThreadThreshold = int(createThreadThreshold)


class Pool:
    def __init__(self, core=3, threadMax=15, keepAliveTime=9, queue=None, poolName="BroachPool"):
        queue = queue if queue is not None else ArrayQueue()
        self.poolName = poolName
        try:
            self._pool = _broach.Pool(int(core), int(threadMax), float(keepAliveTime), queue.queueMax,
                                      queue.isExcInfo, queue.createThreadThreshold, str(poolName))
        except _broach.CoreError as e:
            code, _kind, message = e.args
            raise_error(code, message)
        _pools.add(self)

    def submit(self, fn, *args, **kwargs):
        """Runs ``fn(*args, **kwargs)`` on the pool; returns a Future."""
        future = concurrent.futures.Future()

        def settle(ok, value):
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

        def run():
            # A future cancelled before its turn does not run.
            if future.set_running_or_notify_cancel():
                return fn(*args, **kwargs)
            return None

        def settle_unless_cancelled(ok, value):
            if not future.cancelled():
                settle(ok, value)

        try:
            self._pool.submit(run, settle_unless_cancelled)
        except _broach.CoreError as e:
            code, _kind, message = e.args
            raise_error(code, message)
        return future

    def shutdown(self):
        """Runs what is queued, then stops the threads."""
        self._pool.shutdown()

    def stats(self):
        return self._pool.stats()
