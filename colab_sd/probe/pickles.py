"""Key names and tensor shapes of a torch pickle, without unpickling it.

`pickletools.genops` yields opcodes without executing anything; a tiny symbolic stack rebuilds the dicts and
recognises torch's `_rebuild_tensor_v2(storage, offset, size, …)` calls by name, so the shapes come out while no
global is imported and no callable runs. Works on the zip format (`<name>/data.pkl`) and on the legacy stream
(magic, protocol, sys_info, then the object).
"""
from __future__ import annotations

import io
import pickletools
import re
import zipfile
import zlib
from dataclasses import dataclass
from typing import Optional

from .headers import BoundedReader

# data.pkl of a large checkpoint is a few hundred KB; bound what we are willing to walk.
MAX_PICKLE_BYTES = 64 * 1024 * 1024
_MAX_PICKLE_OPS = 5_000_000


class _Sym:
    """A symbolic value on the simulated pickle stack: nothing is imported or called."""

    __slots__ = ("what", "args")

    def __init__(self, what, args=None):
        self.what, self.args = what, args

    def __repr__(self):  # pragma: no cover - debugging aid
        return f"_Sym({self.what!r})"


class _Tensor:
    __slots__ = ("shape",)

    def __init__(self, shape):
        self.shape = shape


_MARK = object()
# What torch.save'd state dicts (and their training wrappers) legitimately import; anything else is reported.
# Deliberately narrow inside torch: torch.hub / torch.storage._load_from_bytes and friends can run code too.
EXPECTED_GLOBALS = re.compile(r"""^(
    torch\._utils\ \w+
  | torch\ (\w*Storage|Size|device|dtype|float\w*|bfloat16|half|u?int\w*|bool|long|short|double|complex\w*)
  | torch\._tensor\ _rebuild_from_type(_v2)?
  | torch\.nn\.parameter\ \w*Parameter
  | torch\.nn\.modules(\.\w+)*\ \w+
  | collections\ (OrderedDict|defaultdict)
  | numpy(\._?core)?(\.multiarray)?\ (_reconstruct|scalar|ndarray|dtype)
  | numpy\.dtypes\ \w+DType
  | _codecs\ encode
  | (builtins|__builtin__)\ (set|frozenset|dict|list|tuple|slice|bytearray|int|float|complex|str|bytes|bool)
  | (pytorch_lightning|lightning_fabric|lightning|omegaconf)(\.\w+)*\ \w+
  | typing\ Any
  | argparse\ Namespace
)$""", re.VERBOSE)
_REBUILD_TENSOR = {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_qtensor",
                   "_rebuild_sparse_tensor", "_rebuild_device_tensor_from_numpy", "_rebuild_meta_tensor_no_storage"}


def _walk_pickle(stream) -> tuple[object, set[str]]:
    """Evaluate a pickle symbolically with `pickletools.genops`; returns (result, globals it would import)."""
    stack: list = []
    memo: dict = {}
    globals_seen: set[str] = set()

    def pop_mark() -> list:
        items = []
        while True:
            item = stack.pop()
            if item is _MARK:
                items.reverse()
                return items
            items.append(item)

    for count, (op, arg, _pos) in enumerate(pickletools.genops(stream)):
        if count > _MAX_PICKLE_OPS:
            raise ValueError("pickle too long to walk")
        name = op.name
        if name in ("PROTO", "FRAME"):
            continue
        if name == "STOP":
            return (stack[-1] if stack else None), globals_seen
        if name in ("BINUNICODE", "SHORT_BINUNICODE", "UNICODE", "BINUNICODE8", "SHORT_BINSTRING", "BINSTRING",
                    "STRING"):
            stack.append(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
        elif name in ("BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"):
            stack.append(bytes(arg))
        elif name in ("BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "INT", "BINFLOAT", "FLOAT"):
            stack.append(arg)
        elif name == "NONE":
            stack.append(None)
        elif name in ("NEWTRUE", "NEWFALSE"):
            stack.append(name == "NEWTRUE")
        elif name == "MARK":
            stack.append(_MARK)
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = tuple(stack[-n:])
            del stack[-n:]
            stack.append(items)
        elif name == "TUPLE":
            stack.append(tuple(pop_mark()))
        elif name == "EMPTY_LIST":
            stack.append([])
        elif name == "LIST":
            stack.append(pop_mark())
        elif name == "APPEND":
            item = stack.pop()
            if isinstance(stack[-1], list):
                stack[-1].append(item)
        elif name == "APPENDS":
            items = pop_mark()
            if isinstance(stack[-1], list):
                stack[-1].extend(items)
        elif name == "EMPTY_DICT":
            stack.append({})
        elif name == "DICT":
            items = pop_mark()
            stack.append(_pairs_to_dict(items))
        elif name == "SETITEM":
            value = stack.pop()
            key = stack.pop()
            _setitem(stack[-1], key, value)
        elif name == "SETITEMS":
            items = pop_mark()
            for i in range(0, len(items) - 1, 2):
                _setitem(stack[-1], items[i], items[i + 1])
        elif name in ("EMPTY_SET",):
            stack.append(_Sym("set"))
        elif name == "ADDITEMS":
            pop_mark()
        elif name == "FROZENSET":
            pop_mark()
            stack.append(_Sym("frozenset"))
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = stack[-1]
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo[arg])
        elif name == "POP":
            stack.pop()
        elif name == "POP_MARK":
            pop_mark()
        elif name == "DUP":
            stack.append(stack[-1])
        elif name == "GLOBAL":
            module, _, attr = str(arg).partition(" ")
            globals_seen.add(f"{module} {attr}")
            stack.append(_Sym(("global", module, attr)))
        elif name == "STACK_GLOBAL":
            attr = stack.pop()
            module = stack.pop()
            globals_seen.add(f"{module} {attr}")
            stack.append(_Sym(("global", str(module), str(attr))))
        elif name in ("BINPERSID", "PERSID"):
            pid = stack.pop() if name == "BINPERSID" else arg
            stack.append(_Sym("persistent", pid))
        elif name == "REDUCE":
            args = stack.pop()
            func = stack.pop()
            stack.append(_call(func, args))
        elif name == "NEWOBJ":
            args = stack.pop()
            cls = stack.pop()
            stack.append(_call(cls, args))
        elif name == "NEWOBJ_EX":
            stack.pop()
            args = stack.pop()
            cls = stack.pop()
            stack.append(_call(cls, args))
        elif name == "BUILD":
            stack.pop()  # instance state (e.g. a state dict's `_metadata`): not needed
        elif name in ("INST", "OBJ"):
            items = pop_mark()
            if name == "INST":
                module, _, attr = str(arg).partition(" ")
                globals_seen.add(f"{module} {attr}")
            stack.append(_Sym("object", None))
        elif name in ("EXT1", "EXT2", "EXT4"):
            stack.append(_Sym("ext", arg))
        elif name == "NEXT_BUFFER":
            stack.append(_Sym("buffer"))
        elif name == "READONLY_BUFFER":
            pass
        else:
            raise ValueError(f"unsupported pickle opcode {name}")
    raise ValueError("pickle has no STOP")


def _setitem(target, key, value):
    if isinstance(target, dict):
        try:
            target[key] = value
        except TypeError:  # unhashable key: keep walking
            pass


def _pairs_to_dict(items: list) -> dict:
    out: dict = {}
    for i in range(0, len(items) - 1, 2):
        _setitem(out, items[i], items[i + 1])
    return out


def _call(func, args):
    """The symbolic result of calling `func(*args)`: tensors and dicts are recognised, nothing else runs."""
    if isinstance(func, _Sym) and isinstance(func.what, tuple) and func.what[0] == "global":
        module, attr = func.what[1], func.what[2]
        if module.startswith("torch") and attr in _REBUILD_TENSOR and isinstance(args, tuple):
            size = args[2] if len(args) > 2 else None
            if attr == "_rebuild_device_tensor_from_numpy" or not isinstance(size, (tuple, list)):
                size = None
            return _Tensor(list(size) if size is not None else None)
        if module.startswith("torch") and attr == "_rebuild_parameter" and isinstance(args, tuple) and args:
            return args[0]
        if module == "collections" and attr in ("OrderedDict", "defaultdict"):
            return {}
    return _Sym("call", (func, args))


def _flatten(obj, prefix: str = "", out: Optional[dict] = None, depth: int = 0) -> dict:
    """Dotted names → tensor (or leaf) for every leaf under nested dicts."""
    out = {} if out is None else out
    if depth > 12:
        return out
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(key, (str, int)):
                _flatten(value, f"{prefix}{key}.", out, depth + 1)
    elif prefix:
        out[prefix[:-1]] = obj
    return out


# Containers that hold the real state dict inside a training pickle (ckpt, basicsr .pth, …).
_WRAPPERS = ("state_dict", "params_ema", "params", "model_state_dict", "module", "model_ema_state_dict")


class NotTorchZip(ValueError):
    """A zip archive without the `data.pkl` of torch.save."""


def _describe(value) -> str:
    if isinstance(value, _Sym) and value.what == "call" and isinstance(value.args[0], _Sym):
        what = value.args[0].what
        if isinstance(what, tuple) and what[0] == "global":
            return f"a pickled {what[1]}.{what[2]} object"
    return f"a {type(value).__name__}" if not isinstance(value, _Sym) else "a pickled Python object"


@dataclass(frozen=True)
class PickleScan:
    """What walking a pickle found: key → shape (None when unknown), the globals it would import, how it was
    read, and `problem` when its top object is not a dict of tensors."""

    keys: dict
    globals: frozenset
    how: str
    problem: Optional[str] = None


def _scan(result, globals_seen: set, how: str) -> PickleScan:
    if not isinstance(result, dict):
        return PickleScan({}, frozenset(globals_seen), how, f"it holds {_describe(result)}, not a state dict")
    return PickleScan(_pickle_keys(result), frozenset(globals_seen), how)


def _pickle_keys(result: dict) -> dict:
    """keys → shapes (None when unknown) from a symbolically walked pickle's top dict."""
    has_tensors = any(isinstance(v, _Tensor) for v in _flatten(result).values())
    for wrapper in _WRAPPERS:
        inner = result.get(wrapper)
        if isinstance(inner, dict) and inner and (
                not has_tensors or any(isinstance(v, _Tensor) for v in _flatten(inner).values())):
            result = inner
            break
    leaves = _flatten(result)
    tensors = {k: v.shape for k, v in leaves.items() if isinstance(v, _Tensor)}
    if tensors:
        return tensors
    # No torch tensors at all (a plain pickle): the names alone are all we have.
    return {k: None for k in leaves}


_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _read_data_pkl(f) -> tuple[bytes, str]:
    """The bytes of `<name>/data.pkl` from a torch zip file, and its name; only that member is read."""
    try:
        zf = zipfile.ZipFile(f)
    except zipfile.BadZipFile as exc:
        raise NotTorchZip(str(exc)) from None
    try:
        with zf:
            names = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") <= 1]
            if not names:
                raise NotTorchZip("no data.pkl inside")
            info = zf.getinfo(sorted(names, key=len)[0])
            if info.file_size > MAX_PICKLE_BYTES:
                raise ValueError(f"its data.pkl is {info.file_size} bytes, over the {MAX_PICKLE_BYTES} limit")
            with zf.open(info) as member:
                return member.read(MAX_PICKLE_BYTES + 1), info.filename
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, OSError, EOFError) as exc:
        raise ValueError(f"the zip archive is damaged ({exc}); download it again") from None


def read_pickle_keys(f, size: int, is_zip: bool) -> PickleScan:
    """Walk a torch zip file's data.pkl, or a (legacy torch) pickle stream; raises ValueError & co when it cannot."""
    if is_zip:
        data, member = _read_data_pkl(f)
        result, globals_seen = _walk_pickle(io.BytesIO(data))
        return _scan(result, globals_seen, f"read {member} from the zip")
    reader = BoundedReader(f, min(size, MAX_PICKLE_BYTES))
    first, globals_seen = _walk_pickle(reader)
    if first == _TORCH_LEGACY_MAGIC:  # legacy torch.save: magic, protocol, sys_info, then the object
        _walk_pickle(reader)
        _walk_pickle(reader)
        result, more = _walk_pickle(reader)
        return _scan(result, globals_seen | more, "walked the legacy torch pickle")
    return _scan(first, globals_seen, "walked the pickle")


def unexpected_globals(globals_seen: set) -> list:
    """The callables a pickle would import that a plain state dict never needs (os.system, builtins.exec, …)."""
    return sorted(g.replace(" ", ".") for g in globals_seen if not EXPECTED_GLOBALS.match(g))
