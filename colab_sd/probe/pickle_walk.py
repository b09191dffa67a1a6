"""A pickle evaluated symbolically: opcodes from `pickletools.genops`, a simulated stack and memo, nothing imported
and no callable run. What comes out is the top object (dicts, lists, tuples and plain values as themselves; globals,
calls and objects as `Sym`) and every global the real unpickler would import.

Bounded, because a pickle is a program: a few KB of shared memo references can describe a DAG whose naive walk
never ends (fault A8 of issue 13). `Budget` caps opcodes, the nodes later walks may visit, the nesting depth and
the wall time; past any cap `TooComplex` is raised and the caller treats the file as unsafe.
"""
from __future__ import annotations

import _compat_pickle
import pickletools
import re
import time
from typing import Optional

MAX_OPS = 5_000_000  # a big checkpoint's data.pkl is a few hundred thousand opcodes
MAX_NODES = 100_000  # dict entries visited while flattening (an SDXL checkpoint has about 2,500 keys)
MAX_DEPTH = 12  # nesting of dicts that can hold tensors
MAX_SECONDS = 5.0

# A name the unpickler accepts as a plain attribute (dotted names reach attributes of attributes).
_PLAIN_MODULE = re.compile(r"[A-Za-z_][\w.]*")
_PLAIN_NAME = re.compile(r"[A-Za-z_]\w*")


class TooComplex(ValueError):
    """The pickle is larger or more tangled than a state dict ever is; it is not inspected further."""


class Budget:
    """Shared limits for one file: opcodes, visited nodes and a deadline."""

    def __init__(self, seconds: float = MAX_SECONDS, nodes: int = MAX_NODES, ops: int = MAX_OPS):
        self.deadline = time.monotonic() + seconds
        self.nodes, self.ops = nodes, ops

    def spend_op(self, count: int) -> None:
        if count > self.ops:
            raise TooComplex(f"over {self.ops:,} pickle opcodes")
        if count % 4096 == 0:
            self.check_time()

    def spend_node(self) -> None:
        self.nodes -= 1
        if self.nodes < 0:
            raise TooComplex(f"over {MAX_NODES:,} nested entries (shared references that fan out)")
        if self.nodes % 4096 == 0:
            self.check_time()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise TooComplex(f"not inspected within {MAX_SECONDS:g} s")


class Sym:
    """A symbolic value: ("global", module, name), ("call", func, args), "persistent", "object"…"""

    __slots__ = ("what", "args")

    def __init__(self, what, args=None):
        self.what, self.args = what, args

    def __repr__(self):  # pragma: no cover - debugging aid
        return f"Sym({self.what!r})"


def global_name(module, name) -> str:
    """"module name" as the unpickler would resolve it (Python 2 names mapped like `_compat_pickle` does); a name
    that is not a plain string or identifier becomes one that no allow-list matches."""
    if not (isinstance(module, str) and isinstance(name, str)):
        return "<a global whose name is computed at load time>"
    if not (_PLAIN_MODULE.fullmatch(module) and _PLAIN_NAME.fullmatch(name)):
        return f"<a global spelled oddly: {module[:40]!r} {name[:40]!r}>"
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)} {name}"


_MARK = object()
_TEXT = {"BINUNICODE", "SHORT_BINUNICODE", "UNICODE", "BINUNICODE8", "SHORT_BINSTRING", "BINSTRING", "STRING"}
_BYTES = {"BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"}
_NUMBERS = {"BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "INT", "BINFLOAT", "FLOAT"}
_KEYS = (str, int, float, bytes, bool, type(None))  # hashable in constant time: tuples of tuples are not


class Walker:
    """One pickle's symbolic run. `run(stream)` returns (top object, globals as "module name" strings)."""

    def __init__(self, budget: Budget, call):
        self.budget, self.call = budget, call
        self.stack: list = []
        self.memo: dict = {}
        self.globals: set[str] = set()

    def run(self, stream) -> tuple[object, set[str]]:
        for count, (op, arg, _pos) in enumerate(pickletools.genops(stream)):
            self.budget.spend_op(count)
            name = op.name
            if name == "STOP":
                return (self.stack[-1] if self.stack else None), self.globals
            handler = _HANDLERS.get(name)
            if handler is None:
                raise ValueError(f"unsupported pickle opcode {name}")
            handler(self, name, arg)
        raise ValueError("pickle has no STOP")

    # -- helpers -------------------------------------------------------------------------------------

    def pop_mark(self) -> list:
        items = []
        while True:
            item = self.stack.pop()
            if item is _MARK:
                items.reverse()
                return items
            items.append(item)

    def add_global(self, module, name) -> Sym:
        resolved = global_name(module, name)
        self.globals.add(resolved)
        mod, _, attr = resolved.partition(" ")
        return Sym(("global", mod, attr))

    # -- opcodes -------------------------------------------------------------------------------------

    def value(self, name: str, arg) -> None:
        if name in _TEXT:
            self.stack.append(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
        elif name in _BYTES:
            self.stack.append(bytes(arg))
        elif name == "NONE":
            self.stack.append(None)
        elif name in ("NEWTRUE", "NEWFALSE"):
            self.stack.append(name == "NEWTRUE")
        else:
            self.stack.append(arg)

    def container(self, name: str, arg) -> None:
        stack = self.stack
        if name == "MARK":
            stack.append(_MARK)
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name == "EMPTY_LIST":
            stack.append([])
        elif name == "EMPTY_DICT":
            stack.append({})
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = tuple(stack[-n:])
            del stack[-n:]
            stack.append(items)
        elif name == "TUPLE":
            stack.append(tuple(self.pop_mark()))
        elif name == "LIST":
            stack.append(self.pop_mark())
        elif name == "DICT":
            stack.append(pairs_to_dict(self.pop_mark()))
        elif name in ("EMPTY_SET", "FROZENSET"):
            if name == "FROZENSET":
                self.pop_mark()
            stack.append(Sym("set"))

    def fill(self, name: str, arg) -> None:
        stack = self.stack
        if name == "APPEND":
            item = stack.pop()
            if isinstance(stack[-1], list):
                stack[-1].append(item)
        elif name == "APPENDS":
            items = self.pop_mark()
            if isinstance(stack[-1], list):
                stack[-1].extend(items)
        elif name == "SETITEM":
            value, key = stack.pop(), stack.pop()
            set_item(stack[-1], key, value)
        elif name == "SETITEMS":
            items = self.pop_mark()
            for i in range(0, len(items) - 1, 2):
                set_item(stack[-1], items[i], items[i + 1])
        elif name == "ADDITEMS":
            self.pop_mark()

    def memo_op(self, name: str, arg) -> None:
        if name in ("PUT", "BINPUT", "LONG_BINPUT"):
            self.memo[arg] = self.stack[-1]
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = self.stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            self.stack.append(self.memo[arg])
        elif name == "POP":
            self.stack.pop()
        elif name == "POP_MARK":
            self.pop_mark()
        elif name == "DUP":
            self.stack.append(self.stack[-1])

    def code(self, name: str, arg) -> None:
        """Opcodes that import or call: every global is recorded, whatever the way it is reached."""
        stack = self.stack
        if name == "GLOBAL":
            module, _, attr = str(arg).partition(" ")
            stack.append(self.add_global(module, attr))
        elif name == "STACK_GLOBAL":
            attr, module = stack.pop(), stack.pop()
            stack.append(self.add_global(module, attr))
        elif name in ("REDUCE", "NEWOBJ"):
            args, func = stack.pop(), stack.pop()
            stack.append(self.call(func, args))
        elif name == "NEWOBJ_EX":
            stack.pop()
            args, cls = stack.pop(), stack.pop()
            stack.append(self.call(cls, args))
        elif name == "BUILD":
            stack.pop()  # instance state (e.g. a state dict's `_metadata`): not needed
        elif name in ("INST", "OBJ"):  # OBJ's class is a global already on the stack, so already recorded
            self.pop_mark()
            if name == "INST":
                module, _, attr = str(arg).partition(" ")
                self.add_global(module, attr)
            stack.append(Sym("object"))
        elif name in ("EXT1", "EXT2", "EXT4"):
            # An extension code names a global through copyreg's registry: never in a state dict.
            self.globals.add(f"<a global by extension code {arg}>")
            stack.append(Sym("ext", arg))
        elif name in ("BINPERSID", "PERSID"):
            stack.append(Sym("persistent", stack.pop() if name == "BINPERSID" else arg))

    def skip(self, name: str, arg) -> None:
        if name == "NEXT_BUFFER":
            self.stack.append(Sym("buffer"))


_HANDLERS = {}
for _names, _method in (
        (_TEXT | _BYTES | _NUMBERS | {"NONE", "NEWTRUE", "NEWFALSE"}, Walker.value),
        ({"MARK", "EMPTY_TUPLE", "EMPTY_LIST", "EMPTY_DICT", "TUPLE1", "TUPLE2", "TUPLE3", "TUPLE", "LIST", "DICT",
          "EMPTY_SET", "FROZENSET"}, Walker.container),
        ({"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS"}, Walker.fill),
        ({"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "GET", "BINGET", "LONG_BINGET", "POP", "POP_MARK", "DUP"},
         Walker.memo_op),
        ({"GLOBAL", "STACK_GLOBAL", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "BUILD", "INST", "OBJ", "EXT1", "EXT2", "EXT4",
          "BINPERSID", "PERSID"}, Walker.code),
        ({"PROTO", "FRAME", "NEXT_BUFFER", "READONLY_BUFFER"}, Walker.skip)):
    _HANDLERS.update(dict.fromkeys(_names, _method))


def set_item(target, key, value) -> None:
    """`target[key] = value` for a dict and a key that hashes in constant time (str, int…); else ignored."""
    if isinstance(target, dict) and isinstance(key, _KEYS):
        target[key] = value


def pairs_to_dict(items: list) -> dict:
    out: dict = {}
    for i in range(0, len(items) - 1, 2):
        set_item(out, items[i], items[i + 1])
    return out


def flatten(obj, budget: Budget, prefix: str = "", out: Optional[dict] = None, depth: int = 0) -> dict:
    """Dotted names → leaf for every leaf under nested dicts; each entry visited costs the budget one node."""
    out = {} if out is None else out
    if depth > MAX_DEPTH:
        return out
    if isinstance(obj, dict):
        for key, value in obj.items():
            budget.spend_node()
            if isinstance(key, (str, int)):
                flatten(value, budget, f"{prefix}{key}.", out, depth + 1)
    elif prefix:
        out[prefix[:-1]] = obj
    return out
