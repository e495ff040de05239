"""The seed's shared state: ``from BroachRpc.common import GlobalVariable``."""


class GlobalVariable:
    #: The route table: service name -> the Python function registered with
    #: ``@BroachApply.rpcRoute`` in this process.
    FuncRouteRpc = {}
    #: The running node (a ``broach.Node``), or None before ``BroachFramework.run``.
    node = None
