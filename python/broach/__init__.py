"""BroachRpc for Python: the C++ core with a Pythonic API.

    import broach

    node = broach.Node("application.json")     # or broach.Node(json="{...}")

    @node.provide()
    def add(x, y):
        return x + y

    node.call("add", 1, 2)                      # 3, from any provider in the cluster
    add_remote = node.stub("add")
    await node.call_async("add", 1, 2)          # inside asyncio

Values cross as MessagePack (None, bool, int, float, str, bytes, list,
tuple, dict), so Python and C++ nodes call each other. Errors raise
``broach.BroachError`` subclasses (``broach.NotFound``, ...). The seed's
own API (``from BroachRpc import BroachFramework, BroachApply``) is built
on this module.
"""
import asyncio
import atexit
import functools
import inspect
import json as _json
import os
import threading
import weakref

import _broach

from .errors import *  # noqa: F401,F403  (one class per error kind)
from .errors import BroachError, raise_error

__all__ = ["Node", "BroachError"] + [n for n in dir() if n[:1].isupper() and n != "Node"]

_live_nodes = weakref.WeakSet()
# Set in a forked child: only then is getpid() worth a system call per use.
_forked = False


def _after_fork_in_child():
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_after_fork_in_child)
_live_lock = threading.Lock()


def _result(outcome):
    code, payload = outcome
    if code == 0:
        return payload
    _kind, message = payload
    raise_error(code, message)


class Node:
    """A cluster member: provides services and calls them by name.

    ``Node(path)`` loads the seed's JSON config file (``Node()`` uses the
    built-in default, ``Node(json=text)`` JSON text). The node runs on its
    own threads from the moment it is made; ``close()`` (or leaving a
    ``with`` block, or interpreter exit) stops it.
    """

    def __init__(self, path=None, *, json=None):
        if path is not None:
            path = os.fspath(path)
        try:
            self._core = _broach.Node(path, json)
        except _broach.CoreError as e:
            code, _kind, message = e.args
            raise_error(code, message)
        self._pid = os.getpid()
        self._local = {}
        with _live_lock:
            _live_nodes.add(self)

    # -- lifetime -------------------------------------------------------
    def _check(self):
        core = self._core
        if core is None:
            raise BroachError("the node is closed")
        if _forked and os.getpid() != self._pid:
            raise BroachError("this node belongs to the parent process: a forked child must "
                              "make its own broach.Node (the node's threads do not survive fork)")
        return core

    def close(self):
        """Stops the node: finishes running handlers, fails pending calls."""
        core, self._core = self._core, None
        if core is not None and os.getpid() == self._pid:
            core.stop()

    stop = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def address(self):
        """This node's "ip:port"."""
        return self._check().address

    @property
    def http_address(self):
        return self._check().http_address

    # -- serving --------------------------------------------------------
    def provide(self, name=None, fn=None, *, run_on_loop=False):
        """Registers ``fn`` as service ``name`` (default: the function's name).

        ``node.provide("add", fn)``, or as a decorator ``@node.provide()`` /
        ``@node.provide("add")``. The handler runs on the node's worker pool
        (the seed's threadPool), with the GIL only while it runs; ``async
        def`` handlers run on a private asyncio loop thread.
        """
        def register(f):
            service = name or f.__name__
            if run_on_loop and inspect.iscoroutinefunction(f):
                raise ValueError("an async def handler runs on its own asyncio thread: run_on_loop=True "
                                 "would block the node's loop while it waits for it")
            handler = _async_handler(f) if inspect.iscoroutinefunction(f) else f
            self._check().provide(service, handler, run_on_loop)
            self._local[service] = f
            return f
        if callable(name) and fn is None:  # @node.provide without parentheses
            f, name = name, None
            return register(f)
        return register(fn) if fn is not None else register

    def withdraw(self, name):
        self._local.pop(name, None)
        return self._check().withdraw(name)

    # -- calling --------------------------------------------------------
    def call(self, service, *args, timeout=None, routing_key="", version="", retry="default", to=None,
             trace=False, **kwargs):
        """Calls ``service`` on a provider chosen by the load-balancing policy
        (or on the member ``to="ip:port"``) and returns its result. Blocks
        with the GIL released; Ctrl-C interrupts it. ``timeout`` in seconds
        (default: the config's rpcTimeOut). ``trace=True`` records the call's
        trace on every member it reaches (``broach trace``)."""
        return _result(self._check().call(to, service, args, kwargs, timeout, routing_key, version, retry,
                                          trace))

    def stub(self, service, **options):
        """A callable that calls ``service``: ``add = node.stub("add"); add(1, 2)``."""
        return functools.partial(self.call, service, **options)

    async def call_async(self, service, *args, timeout=None, routing_key="", version="", retry="default",
                         to=None, trace=False, **kwargs):
        """``await node.call_async(...)``: the call runs on the node's
        threads; its completion is queued in C++ and announced on an eventfd
        that the running event loop watches (``loop.add_reader``), so no
        thread waits for it and no node thread takes the GIL."""
        loop = asyncio.get_running_loop()
        waiters = _loop_waiters(loop)
        fut = loop.create_future()
        call_id = waiters.add(fut)
        try:
            self._check().call_queued(to, service, args, kwargs, timeout, routing_key, version, retry,
                                      trace, waiters.queue, call_id)
        except BaseException:
            waiters.futures.pop(call_id, None)
            raise
        return await fut

    # -- the cluster ----------------------------------------------------
    def members(self):
        """This node's view of the cluster: a list of dicts (address, state, ...)."""
        return self._check().members()

    def routes(self):
        """Service -> list of provider addresses."""
        return self._check().routes()

    def stats(self):
        """Everything ``broach stats`` shows, as a dict."""
        return _json.loads(self._check().stats_json())

    @property
    def thread_pool(self):
        """The config's threadPool section (the seed's keys)."""
        return self._check().thread_pool


class _LoopWaiters:
    """The calls one event loop awaits, and the C++ queue their outcomes
    arrive in (its eventfd is watched by the loop)."""

    def __init__(self, loop):
        self.queue = _broach.CompletionQueue()
        self.futures = {}
        self.next_id = 0
        loop.add_reader(self.queue.fd, self.drain)

    def add(self, fut):
        self.next_id += 1
        self.futures[self.next_id] = fut
        return self.next_id

    def drain(self):
        for call_id, (code, payload) in self.queue.drain():
            fut = self.futures.pop(call_id, None)
            if fut is None or fut.done():
                continue  # cancelled meanwhile
            if code == 0:
                fut.set_result(payload)
            else:
                fut.set_exception(errors_error(code, payload[1]))


def _loop_waiters(loop):
    # Kept on the loop itself: it lives and dies with the loop, and a lookup
    # costs an attribute read (a WeakKeyDictionary made a weakref per call).
    w = getattr(loop, "_broach_waiters", None)
    if w is None:
        w = _LoopWaiters(loop)
        loop._broach_waiters = w
    return w


def errors_error(code, message):
    from .errors import error_class
    return error_class(code)(message, code)


# -- async handlers ------------------------------------------------------
_async_loop = None
_async_loop_lock = threading.Lock()


def _handler_loop():
    """One asyncio loop thread for every ``async def`` handler of the process."""
    global _async_loop
    with _async_loop_lock:
        if _async_loop is None:
            loop = asyncio.new_event_loop()
            t = threading.Thread(target=loop.run_forever, name="broach-asyncio", daemon=True)
            t.start()
            _async_loop = loop
        return _async_loop


def _async_handler(f):
    @functools.wraps(f)
    def run(*args, **kwargs):
        # A pool worker waits (GIL released) for the coroutine, which runs on
        # the handler loop beside the other async handlers.
        return asyncio.run_coroutine_threadsafe(f(*args, **kwargs), _handler_loop()).result()
    return run


@atexit.register
def _close_all():
    # Interpreter exit with nodes running: stop them while Python still runs.
    with _live_lock:
        nodes = list(_live_nodes)
    for n in nodes:
        try:
            n.close()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
