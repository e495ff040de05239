"""The seed's thread pool module: ``from threadPool import BroachPool``."""
from . import BroachPool  # noqa: F401
