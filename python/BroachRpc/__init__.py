"""The seed's API on BroachRpc's C++ core.

    from BroachRpc import BroachFramework, BroachApply

    BroachFramework.run("./application1.json")    # returns at once

    @BroachApply.rpcRoute()                     # service "work01"
    def work01(x, y):
        return x + y

    @BroachApply.rpcCall(name="work01")         # a stub: calls the cluster
    def t1(*args, **kwargs):
        pass

    t1(1, 2)                                    # 3

As in the seed, a running framework keeps the process alive after the main
script ends (a provider script just registers its routes), until
``BroachFramework.stop()``, Ctrl-C or SIGTERM. Errors are ``broach``
exceptions (``broach.NotFound``, ...), all subclasses of ``Exception``.
"""
import os
import signal
import threading

import broach

from .common import GlobalVariable

__all__ = ["BroachFramework", "BroachApply"]

_lock = threading.Lock()
_pending = {}  # routes registered before run()
_keeper = None
_stopped = threading.Event()


def _keep_alive():
    # A non-daemon thread: Python waits for it before it exits. A SIGTERM
    # only sets the event (a signal handler must not take _lock, which the
    # main thread may hold); the node is stopped here.
    _stopped.wait()
    BroachFramework.stop()


def _on_sigterm(signum, frame):  # noqa: ARG001
    # Only the event: the keeper thread stops the node, then the process
    # exits once the main script has ended (as a provider script has).
    _stopped.set()


class BroachFramework:
    @staticmethod
    def run(path="./application.json"):
        """Starts this process's node from the seed's JSON config file and
        returns at once; the node serves on its own threads."""
        global _keeper
        with _lock:
            if GlobalVariable.node is not None:
                raise broach.BroachError("BroachFramework.run: already running")
            node = broach.Node(os.fspath(path))
            GlobalVariable.node = node
            for name, fn in _pending.items():
                node.provide(name, fn)
            _pending.clear()
            _stopped.clear()
            _keeper = threading.Thread(target=_keep_alive, name="BroachFramework", daemon=False)
            _keeper.start()
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
        return node

    @staticmethod
    def stop():
        """Stops the node and lets the process exit."""
        with _lock:
            node, GlobalVariable.node = GlobalVariable.node, None
        if node is not None:
            node.close()
        _stopped.set()

    @staticmethod
    def node():
        """The running ``broach.Node`` (None before run)."""
        return GlobalVariable.node


class BroachApply:
    @staticmethod
    def rpcRoute(name=None):
        """Decorator: provides the function as service ``name`` (default: its
        name). The function itself is unchanged; a call by name that picks
        this process runs it in-process."""
        def register(fn):
            service = name or fn.__name__
            with _lock:
                GlobalVariable.LocalRoutes[service] = fn
                node = GlobalVariable.node
                if node is None:
                    _pending[service] = fn
            if node is not None:
                node.provide(service, fn)
            return fn
        return register

    @staticmethod
    def rpcCall(name=None, timeout=None):
        """Decorator: replaces the function by a stub that calls service
        ``name`` (default: the function's name) on the cluster with the
        stub's arguments and returns the result (the body never runs)."""
        def stub(fn):
            service = name or fn.__name__

            def call(*args, **kwargs):
                node = GlobalVariable.node
                if node is None:
                    raise broach.BroachError(f"{service}: BroachFramework.run(...) was not called")
                return node.call(service, *args, timeout=timeout, **kwargs)
            call.__name__ = fn.__name__
            call.__qualname__ = fn.__qualname__
            call.__doc__ = fn.__doc__
            call.service = service
            return call
        return stub
