"""Key names and tensor shapes of a torch pickle, without unpickling it.

`pickletools.genops` yields opcodes without executing anything; a tiny symbolic stack rebuilds the dicts and
recognises torch's `_rebuild_tensor_v2(storage, offset, size, …)` calls by name, so the shapes come out while no
global is imported and no callable runs. Works on the zip format (`<name>/data.pkl`) and on the legacy stream
(magic, protocol, sys_info, then the object).
"""
from __future__ import annotations

import io
import re
import zipfile
import zlib
from dataclasses import dataclass
from typing import Optional

from .headers import BoundedReader
from .pickle_walk import Budget, Sym, TooComplex, Walker, flatten

# data.pkl of a large checkpoint is a few hundred KB; bound what we are willing to read.
MAX_PICKLE_BYTES = 64 * 1024 * 1024


class _Tensor:
    __slots__ = ("shape",)

    def __init__(self, shape):
        self.shape = shape


# What torch.save'd state dicts (and their training wrappers) legitimately import; anything else is reported.
# Names are judged after `pickle_walk.global_name` resolved them (Python 2 spellings mapped, odd ones refused).
# Deliberately narrow: torch._utils._import_dotted_name, torch.hub, torch.storage._load_from_bytes, lightning's
# cloud loaders and builtins.getattr can all reach code, so only rebuild functions and plain classes are allowed.
EXPECTED_GLOBALS = re.compile(r"""(
    torch\._utils\ _rebuild_\w+
  | torch\ (\w*Storage|Size|device|dtype|float\w*|bfloat16|half|u?int\w*|bool|long|short|double|complex\w*)
  | torch\._tensor\ _rebuild_from_type(_v2)?
  | torch\.nn\.parameter\ \w*Parameter
  | torch\.nn\.modules(\.\w+)*\ [A-Z]\w*
  | collections\ (OrderedDict|defaultdict)
  | numpy(\._?core)?(\.multiarray)?\ (_reconstruct|scalar|ndarray|dtype)
  | numpy\.dtypes\ \w+DType
  | _codecs\ encode
  | builtins\ (set|frozenset|dict|list|tuple|slice|bytearray|int|float|complex|str|bytes|bool)
  | (pytorch_lightning|lightning\.pytorch)\.callbacks(\.model_checkpoint)?\ (ModelCheckpoint|model_checkpoint)
  | (pytorch_lightning|lightning_fabric|lightning\.fabric)\.utilities\.(parsing|data)\ AttributeDict
  | omegaconf(\.\w+)?\ (DictConfig|ListConfig|ContainerMetadata|Metadata|\w*Node)
  | typing\ Any
  | argparse\ Namespace
)""", re.VERBOSE)
_REBUILD_TENSOR = {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_qtensor",
                   "_rebuild_sparse_tensor", "_rebuild_device_tensor_from_numpy", "_rebuild_meta_tensor_no_storage"}


def _walk_pickle(stream, budget: Budget) -> tuple[object, set[str]]:
    """Evaluate a pickle symbolically (see `pickle_walk`); returns (result, globals it would import)."""
    return Walker(budget, _call).run(stream)


def _call(func, args):
    """The symbolic result of calling `func(*args)`: tensors and dicts are recognised, nothing else runs."""
    if isinstance(func, Sym) and isinstance(func.what, tuple) and func.what[0] == "global":
        module, attr = func.what[1], func.what[2]
        if module.startswith("torch") and attr in _REBUILD_TENSOR and isinstance(args, tuple):
            size = args[2] if len(args) > 2 else None
            plain = isinstance(size, (tuple, list)) and all(type(n) is int for n in size)
            return _Tensor(list(size) if plain and attr != "_rebuild_device_tensor_from_numpy" else None)
        if module.startswith("torch") and attr == "_rebuild_parameter" and isinstance(args, tuple) and args:
            return args[0]
        if module == "collections" and attr in ("OrderedDict", "defaultdict"):
            return {}
    return Sym("call", (func, args))


# Containers that hold the real state dict inside a training pickle (ckpt, basicsr .pth, …).
_WRAPPERS = ("state_dict", "params_ema", "params", "model_state_dict", "module", "model_ema_state_dict")


class NotTorchZip(ValueError):
    """A zip archive without the `data.pkl` of torch.save."""


def _describe(value) -> str:
    if isinstance(value, Sym) and value.what == "call" and isinstance(value.args[0], Sym):
        what = value.args[0].what
        if isinstance(what, tuple) and what[0] == "global":
            return f"a pickled {what[1]}.{what[2]} object"
    return f"a {type(value).__name__}" if not isinstance(value, Sym) else "a pickled Python object"


@dataclass(frozen=True)
class PickleScan:
    """What walking a pickle found: key → shape (None when unknown), the globals it would import, how it was
    read, and `problem` when its top object is not a dict of tensors."""

    keys: dict
    globals: frozenset
    how: str
    problem: Optional[str] = None
    too_complex: Optional[str] = None  # why the walk stopped (then `globals` holds TOO_COMPLEX: unsafe)


# Stands for "any global at all" when a pickle could not be inspected to the end.
TOO_COMPLEX = "<anything: too complex to inspect>"


def _scan(result, globals_seen: set, how: str, budget: Budget) -> PickleScan:
    if not isinstance(result, dict):
        return PickleScan({}, frozenset(globals_seen), how, f"it holds {_describe(result)}, not a state dict")
    return PickleScan(_pickle_keys(result, budget), frozenset(globals_seen), how)


def _pickle_keys(result: dict, budget: Budget) -> dict:
    """keys → shapes (None when unknown) from a symbolically walked pickle's top dict."""
    has_tensors = any(isinstance(v, _Tensor) for v in flatten(result, budget).values())
    for wrapper in _WRAPPERS:
        inner = result.get(wrapper)
        if isinstance(inner, dict) and inner and (
                not has_tensors or any(isinstance(v, _Tensor) for v in flatten(inner, budget).values())):
            result = inner
            break
    leaves = flatten(result, budget)
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
    """Walk a torch zip file's data.pkl, or a (legacy torch) pickle stream; raises ValueError & co when it cannot.

    A pickle past the walk's limits (opcodes, nested entries, time: `pickle_walk.Budget`) is not an error: the
    scan comes back with `too_complex` set and TOO_COMPLEX among its globals, so every caller treats it as unsafe.
    """
    budget, seen = Budget(), set()
    how = "walked the pickle"
    try:
        if is_zip:
            data, member = _read_data_pkl(f)
            how = f"read {member} from the zip"
            result, seen = _walk_pickle(io.BytesIO(data), budget)
            return _scan(result, seen, how, budget)
        reader = BoundedReader(f, min(size, MAX_PICKLE_BYTES))
        first, seen = _walk_pickle(reader, budget)
        if first == _TORCH_LEGACY_MAGIC:  # legacy torch.save: magic, protocol, sys_info, then the object
            how = "walked the legacy torch pickle"
            for _ in range(2):
                seen = seen | _walk_pickle(reader, budget)[1]
            result, more = _walk_pickle(reader, budget)
            return _scan(result, seen | more, how, budget)
        return _scan(first, seen, how, budget)
    except (TooComplex, RecursionError) as exc:
        why = str(exc) if isinstance(exc, TooComplex) else "nested too deeply"
        return PickleScan({}, frozenset(seen | {TOO_COMPLEX}), how, f"it is too complex to inspect ({why})", why)


def unexpected_globals(globals_seen: set) -> list:
    """The callables a pickle would import that a plain state dict never needs (os.system, builtins.exec, …);
    names that are not "module name" pairs (a computed or oddly spelled global, TOO_COMPLEX) come back as they are."""
    return sorted(g if g.startswith("<") else g.replace(" ", ".")
                  for g in globals_seen if not EXPECTED_GLOBALS.fullmatch(g))
