"""The seed's shared state: ``from BroachRpc.common import GlobalVariable``."""
import collections.abc


class _RouteTable(collections.abc.Mapping):
    """``GlobalVariable.FuncRouteRpc``: the route table as the seed shows it,
    live: service name -> provider addresses ("ip:port"), for every service
    the cluster offers (this process's own ``rpcRoute`` functions included,
    listed under this node's address). Empty before ``BroachFramework.run``.
    ``GlobalVariable.LocalRoutes`` holds this process's functions by name."""

    def _routes(self):
        node = GlobalVariable.node
        routes = dict(node.routes()) if node is not None else {}
        for name in GlobalVariable.LocalRoutes:
            if node is not None and node.address not in routes.setdefault(name, []):
                routes[name] = routes[name] + [node.address]
        return routes

    def __getitem__(self, name):
        return self._routes()[name]

    def __iter__(self):
        return iter(self._routes())

    def __len__(self):
        return len(self._routes())

    def __repr__(self):
        return repr(self._routes())


class GlobalVariable:
    #: The route table (live): service name -> provider addresses.
    FuncRouteRpc = _RouteTable()
    #: Service name -> the Python function registered with
    #: ``@BroachApply.rpcRoute`` in this process.
    LocalRoutes = {}
    #: The running node (a ``broach.Node``), or None before ``BroachFramework.run``.
    node = None
