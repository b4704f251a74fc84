"""What may cross between the trusted grader and the student's kernel, and how.

Only plain data crosses: ``None``, bools, ints, floats, complex numbers, strings, numeric numpy arrays and
scalars (dtype kinds b, i, u, f, c), and lists, tuples and dicts (str or int keys) of these. Everything else
stays where it lives: an object of the student's kernel is represented on the trusted side by a
:class:`Handle` (an id in a table kept by the kernel), which can be passed back into calls and, when the object
is callable, called.

The format is JSON for structure and ``.npy`` bytes (base64) for arrays, never pickle. The kernel side of the
bridge (:data:`KERNEL_SOURCE`) runs in the student's process and is therefore *not* trusted: the student can
replace it, so :func:`decode` assumes nothing about what it receives. It re-parses every array from its bytes
with ``allow_pickle=False``, accepts only numeric dtypes, makes a fresh native-byte-order copy (a subclass,
``__array__`` or ``__eq__`` trick cannot survive that), bounds nesting depth, element counts and total bytes,
and raises :class:`WireError` for anything else.
"""
from __future__ import annotations

import base64
import binascii
import builtins
import io
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib import format as npformat

MIME = "application/x.workbook-bridge+json"
NUMERIC_KINDS = "biufc"
MAX_DEPTH = 32
MAX_ITEMS = 100_000
MAX_MESSAGE_CHARS = 2_000
MAX_NPY_HEADER = 10_000


class WireError(Exception):
    """Data from the kernel was malformed, too large or of a kind that may not cross."""


@dataclass(frozen=True)
class Handle:
    """An object that stays in the student's kernel: its id there, its type name and whether it is callable.

    ``generation`` names the kernel process that owns it; after a restart old handles are refused rather than
    silently pointing at a different object.
    """

    id: int
    type_name: str
    is_callable: bool
    generation: int

    def __repr__(self) -> str:
        return f"<{self.type_name} object in the student's kernel>"


class _Budget:
    def __init__(self, max_bytes: int):
        self.left = max_bytes
        self.items = 0

    def spend(self, nbytes: int) -> None:
        self.left -= nbytes
        self.items += 1
        if self.left < 0:
            raise WireError("the value is larger than the limit for one call")
        if self.items > MAX_ITEMS:
            raise WireError(f"the value has more than {MAX_ITEMS} parts")


def _npy_bytes(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _parse_npy(text: Any, budget: _Budget) -> np.ndarray:
    if not isinstance(text, str):
        raise WireError("array data is not a string")
    budget.spend(len(text))
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, binascii.Error, UnicodeEncodeError) as err:
        raise WireError(f"array data is not valid base64: {err}") from None
    # The header is read and checked before any array is built: a few bytes may claim a huge shape, and numpy's
    # own loader would allocate that shape first. Its parser raises many kinds of errors on garbage (SyntaxError,
    # tokenize errors, MemoryError, …): every one of them means "invalid data".
    try:
        fp = io.BytesIO(raw)
        version = npformat.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(fp, max_header_size=MAX_NPY_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = npformat.read_array_header_2_0(fp, max_header_size=MAX_NPY_HEADER)
        else:
            raise WireError(f".npy version {version} is not accepted")
    except WireError:
        raise
    except Exception as err:  # noqa: BLE001 - see above: any failure of the header parser is invalid data
        raise WireError(f"array data is not a valid .npy payload ({type(err).__name__})") from None
    if dtype.kind not in NUMERIC_KINDS or dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise WireError(f"arrays of dtype {dtype} may not cross (only numeric dtypes)")
    if not all(type(n) is int and n >= 0 for n in shape) or len(shape) > MAX_DEPTH:
        raise WireError("array data has an invalid shape")
    count = math.prod(shape)
    if count * dtype.itemsize != len(raw) - fp.tell():
        raise WireError("array data does not match the size its header states")
    array = np.frombuffer(raw, dtype=dtype, count=count, offset=fp.tell()).reshape(shape, order="F" if fortran else "C")
    return np.array(array, dtype=dtype.newbyteorder("="), copy=True, order="C")


def encode(value: Any, max_bytes: int, generation: int) -> Any:
    """Encode trusted plain data (and handles of the current kernel) for the kernel; refuse anything else."""
    budget = _Budget(max_bytes)

    def enc(v: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise WireError("the value is nested too deeply to pass to student code")
        budget.spend(16)
        if v is None:
            return ["n"]
        if type(v) is bool or type(v) is np.bool_:
            return ["b", bool(v)]
        if isinstance(v, Handle):
            if v.generation != generation:
                raise WireError("this object lived in a kernel that has since been restarted")
            return ["h", v.id]
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            return ["i", str(int(v))]
        if type(v) is float:
            return ["f", v.hex()]
        if type(v) is complex:
            return ["c", [v.real.hex(), v.imag.hex()]]
        if isinstance(v, str):
            budget.spend(len(v))
            return ["s", str(v)]
        if isinstance(v, np.generic) and v.dtype.kind in NUMERIC_KINDS:
            budget.spend(v.nbytes)
            return ["g", _npy_bytes(np.asarray(v))]
        if isinstance(v, np.ndarray) and v.dtype.kind in NUMERIC_KINDS and not v.dtype.hasobject:
            budget.spend(v.nbytes)
            return ["a", _npy_bytes(np.asarray(v))]
        if isinstance(v, (list, tuple)):
            return ["l" if isinstance(v, list) else "t", [enc(x, depth + 1) for x in v]]
        if isinstance(v, dict):
            return ["d", [[enc(k, depth + 1), enc(x, depth + 1)] for k, x in v.items()]]
        raise WireError(f"a {type(v).__name__} cannot be passed to student code (only plain data and handles)")

    return enc(value, 0)


def decode(tree: Any, max_bytes: int, generation: int) -> Any:
    """Decode a value sent by the (untrusted) kernel into fresh trusted plain data and handles."""
    budget = _Budget(max_bytes)

    def dec(e: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise WireError("the value is nested too deeply")
        budget.spend(16)
        if not isinstance(e, list) or not e or not isinstance(e[0], str):
            raise WireError("malformed value")
        tag, rest = e[0], e[1:]
        try:
            if tag == "n" and not rest:
                return None
            if tag == "b" and type(rest[0]) is bool:
                return rest[0]
            if tag == "i" and isinstance(rest[0], str) and len(rest[0]) <= 64:
                return int(rest[0])
            if tag == "f" and isinstance(rest[0], str) and len(rest[0]) <= 64:
                return float.fromhex(rest[0])
            if tag == "c" and isinstance(rest[0], list) and len(rest[0]) == 2:
                return complex(float.fromhex(str(rest[0][0])[:64]), float.fromhex(str(rest[0][1])[:64]))
            if tag == "s" and isinstance(rest[0], str):
                budget.spend(len(rest[0]))
                return str(rest[0])
            if tag == "a":
                return _parse_npy(rest[0], budget)
            if tag == "g":
                array = _parse_npy(rest[0], budget)
                if array.shape != ():
                    raise WireError("a numpy scalar must be 0-dimensional")
                return array[()]
            if tag in ("l", "t") and isinstance(rest[0], list):
                items = [dec(x, depth + 1) for x in rest[0]]
                return items if tag == "l" else tuple(items)
            if tag == "d" and isinstance(rest[0], list):
                out = {}
                for pair in rest[0]:
                    if not isinstance(pair, list) or len(pair) != 2:
                        raise WireError("malformed dict entry")
                    key = dec(pair[0], depth + 1)
                    if type(key) not in (str, int):
                        raise WireError("dict keys must be strings or integers")
                    out[key] = dec(pair[1], depth + 1)
                return out
            if tag == "h" and type(rest[0]) is int and isinstance(rest[1], str) and type(rest[2]) is bool:
                return Handle(rest[0], rest[1][:80], rest[2], generation)
        except (IndexError, ValueError, OverflowError, TypeError) as err:
            raise WireError(f"malformed value ({tag}): {err}") from None
        raise WireError(f"a value tagged {tag[:10]!r} may not cross")

    return dec(tree, 0)


def parse_reply(text: Any, max_bytes: int) -> list:
    """The outer JSON of one reply from the kernel, size-checked before parsing."""
    if not isinstance(text, str):
        raise WireError("the kernel's reply is not text")
    if len(text) > max_bytes + 4096:
        raise WireError(f"the kernel's reply is {len(text)} bytes, more than the limit of {max_bytes} for one call")
    try:
        reply = json.loads(text, parse_constant=lambda c: math.nan)
    except (ValueError, RecursionError) as err:
        raise WireError(f"the kernel's reply is not valid JSON: {err}") from None
    if not isinstance(reply, list) or not reply or reply[0] not in ("ok", "raise"):
        raise WireError("the kernel's reply has an unknown form")
    return reply


def parse_callback(text: Any, max_bytes: int) -> list:
    """The kernel's request for a substituted function's value: ``["callback", name, args, kwargs]``."""
    if not isinstance(text, str):
        raise WireError("the kernel's callback is not text")
    if len(text) > max_bytes:
        raise WireError(f"the kernel's callback is {len(text)} bytes, more than the limit of {max_bytes}")
    try:
        request = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise WireError(f"the kernel's callback is not valid JSON: {err}") from None
    if not (isinstance(request, list) and len(request) == 4 and request[0] == "callback"
            and isinstance(request[1], str)):
        raise WireError("the kernel's callback has an unknown form")
    return request[1:]


class StudentException(Exception):
    """An exception raised by student code in the kernel whose type is not a Python built-in."""


def rebuild_exception(type_name: Any, message: Any, student_line: Any = "") -> Exception:
    """The trusted twin of an exception raised in the kernel.

    Built-in exception types are rebuilt as themselves (a stub's ``NotImplementedError`` stays one, a
    ``ValueError`` a test expects stays one); any other type becomes :class:`StudentException`. Only the
    class is chosen from the name and only a capped message string crosses.
    """
    name = str(type_name)[:80]
    text = str(message)[:MAX_MESSAGE_CHARS] or "(raised by the student's code without a message)"
    cls = getattr(builtins, name, None)
    err: Exception = StudentException(f"{name}: {text}")
    if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == "builtins":
        try:
            err = cls(text)
        except Exception:  # a built-in with an unusual constructor (UnicodeDecodeError)
            pass
    if isinstance(student_line, str) and student_line:
        err.student_line = student_line[:300]  # shown by workbook.checks.check_call; text only
    return err


# ---------------------------------------------------------------------------------------------------------------
# The kernel side. Sent as source text and executed in the student's kernel; defines ``__workbook_bridge__``.
# It is a convenience for the honest case, not a security boundary: the trusted side validates its output.
KERNEL_SOURCE = r'''
def __workbook_bridge_make():
    import base64, io, json, linecache, os, sys, traceback
    import numpy as _np
    from IPython import get_ipython
    from IPython.display import publish_display_data

    MIME = %(mime)r
    table, counter = {}, [0]

    def npy(a):
        buffer = io.BytesIO()
        _np.save(buffer, _np.asarray(a), allow_pickle=False)
        return base64.b64encode(buffer.getvalue()).decode("ascii")

    def handle(v):
        counter[0] += 1
        table[counter[0]] = v
        return ["h", counter[0], type(v).__name__, callable(v)]

    def enc(v, depth=0):
        if depth > 30:
            return handle(v)
        t = type(v)
        if v is None:
            return ["n"]
        if t is bool:
            return ["b", v]
        if t is int:
            return ["i", str(v)]
        if t is float:
            return ["f", v.hex()]
        if t is complex:
            return ["c", [v.real.hex(), v.imag.hex()]]
        if t is str:
            return ["s", v]
        if isinstance(v, _np.generic) and v.dtype.kind in "biufc":
            return ["g", npy(v)]
        if isinstance(v, _np.ndarray) and v.dtype.kind in "biufc" and not v.dtype.hasobject and v.dtype.fields is None:
            return ["a", npy(v)]
        if t is list or t is tuple:
            return ["l" if t is list else "t", [enc(x, depth + 1) for x in v]]
        if t is dict and all(type(k) in (str, int) for k in v):
            return ["d", [[enc(k, depth + 1), enc(x, depth + 1)] for k, x in v.items()]]
        return handle(v)

    def dec(e):
        tag = e[0]
        if tag == "n": return None
        if tag == "b": return e[1]
        if tag == "i": return int(e[1])
        if tag == "f": return float.fromhex(e[1])
        if tag == "c": return complex(float.fromhex(e[1][0]), float.fromhex(e[1][1]))
        if tag == "s": return e[1]
        if tag == "a": return _np.load(io.BytesIO(base64.b64decode(e[1])), allow_pickle=False)
        if tag == "g": return _np.load(io.BytesIO(base64.b64decode(e[1])), allow_pickle=False)[()]
        if tag == "l": return [dec(x) for x in e[1]]
        if tag == "t": return tuple(dec(x) for x in e[1])
        if tag == "d": return {dec(k): dec(x) for k, x in e[1]}
        if tag == "h": return table[e[1]]
        raise ValueError("unknown tag %%r" %% (tag,))

    bridge_file = sys._getframe().f_code.co_filename
    library = tuple(os.path.realpath(p) + os.sep for p in {sys.prefix, sys.base_prefix, sys.exec_prefix})

    def where(err):
        """The innermost line of the student's own code in the traceback (not numpy, not this bridge)."""
        try:
            frames = [f for f in traceback.extract_tb(err.__traceback__)
                      if f.filename != bridge_file and not f.filename.startswith("<frozen")
                      and not os.path.realpath(f.filename).startswith(library)]
            if not frames:
                return ""
            f = frames[-1]
            text = (f.line or linecache.getline(f.filename, f.lineno)).strip()
            head = "line %%d" %% f.lineno if f.name == "<module>" else "in %%s, line %%d" %% (f.name, f.lineno)
            return (head + ": " + text if text else head)[:300]
        except Exception:
            return ""

    def stubs(names):
        """Stand-ins for the names a test substitutes: each call asks the grader, over stdin, for the value."""
        import builtins

        def make(name):
            def stub(*a, **k):
                answer = json.loads(input(json.dumps(["callback", name, enc(list(a)), enc(k)])))
                if answer[0] == "raise":
                    cls = getattr(builtins, str(answer[1]), None)
                    if not (isinstance(cls, type) and issubclass(cls, Exception)):
                        cls = RuntimeError
                    raise cls(str(answer[2]))
                return dec(answer[1])
            stub.__name__ = stub.__qualname__ = name
            return stub
        return {name: make(name) for name in names}

    missing = object()

    def reply(payload):
        publish_display_data({MIME: json.dumps(payload)})

    def serve(request):
        request = json.loads(request)
        op = request["op"]
        try:
            if op == "call":
                target = dec(request["target"])
                args = dec(request["args"])
                kwargs = dec(request["kwargs"])
                names = request.get("substitute") or []
                scope = getattr(target, "__globals__", None)
                if names and scope is None:
                    raise TypeError("%%s is not a plain function: the test cannot run it with the reference's %%s"
                                    %% (type(target).__name__, ", ".join(names)))
                saved = {name: scope.get(name, missing) for name in names} if names else {}
                try:
                    if names:
                        scope.update(stubs(names))
                    result = target(*args, **kwargs)
                finally:
                    for name, value in saved.items():
                        if value is missing:
                            scope.pop(name, None)
                        else:
                            scope[name] = value
                reply(["ok", enc(result)])
            elif op == "lookup":
                ns = get_ipython().user_ns
                found = {name: enc(ns[name]) for name in request["names"] if name in ns}
                reply(["ok", ["d", [[["s", k], v] for k, v in found.items()]]])
            elif op == "modules":
                names = sorted({m.split(".")[0] for m in list(sys.modules)})
                reply(["ok", ["l", [["s", m] for m in names]]])
            elif op == "release":
                table.clear()
                reply(["ok", ["n"]])
        except BaseException as err:
            reply(["raise", type(err).__name__, str(err)[:2000], where(err)])

    return serve

__workbook_bridge__ = __workbook_bridge_make()
del __workbook_bridge_make
''' % {"mime": MIME}
