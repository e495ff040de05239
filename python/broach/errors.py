"""BroachRpc's errors as Python exceptions.

One base class, ``BroachError`` (an ``Exception``, so the seed's
``except Exception`` still catches everything), and one subclass per kind
of the C++ ``Errc``, each with ``.code`` (the number) and ``.kind`` (its
stable short name, e.g. ``"not_found"``)::

    try:
        node.call("work02", 1, 2)
    except broach.NotFound as e:
        print(e.code, e.kind, e)
"""
import _broach

__all__ = ["BroachError", "error_class", "raise_error"]


class BroachError(Exception):
    """Base class of every BroachRpc error. ``code`` / ``kind`` name it."""

    code = -1
    kind = "unknown"

    def __init__(self, message="", code=None):
        super().__init__(message)
        if code is not None:
            self.code = code


def _class_name(kind):
    return "".join(part.capitalize() for part in kind.split("_"))


_BY_CODE = {}
for _code, _kind in sorted(_broach.ERRC.items()):
    if _code == 0:
        continue
    _cls = type(_class_name(_kind), (BroachError,), {"code": _code, "kind": _kind,
                                                    "__doc__": f"BroachRpc error {_kind!r} (code {_code})."})
    _BY_CODE[_code] = _cls
    globals()[_cls.__name__] = _cls
    __all__.append(_cls.__name__)


def error_class(code):
    """The exception class of an error code (BroachError for an unknown one)."""
    return _BY_CODE.get(code, BroachError)


def raise_error(code, message):
    raise error_class(code)(message, code)
