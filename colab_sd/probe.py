"""What is this model file? Kind (folder) and base family from its header alone.

Reads only headers, never tensor data, and never imports torch:

- safetensors: 8 bytes little-endian header length N, then N bytes of JSON (key → dtype, shape, offsets);
- GGUF: the key/value and tensor-info sections before the data;
- torch zip pickles (.ckpt/.pt/.pth/.bin): `*/data.pkl` from the zip, *walked* with `pickletools.genops`
  and a tiny symbolic stack, so that nothing in it is imported or called (a pickle can run code when loaded);
- legacy (pre-zip) torch pickles the same way, from the first pickles of the stream;
- a diffusers folder: `model_index.json` and the component `config.json` files.

The key layouts behind the rules follow diffusers' `single_file_utils` (CHECKPOINT_KEY_NAMES,
`infer_diffusers_model_type`), kohya sd-scripts and LyCORIS. `inspect_keys` is the pure classifier.
"""
from __future__ import annotations

import io
import json
import logging
import os
import pickletools
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from .errors import InputError
from .library import KINDS

log = logging.getLogger("colab_sd.probe")

# A real header is at most a few MB (a 3,000-tensor checkpoint is ~300 KB); anything near this is garbage.
MAX_HEADER_BYTES = 100 * 1024 * 1024
# data.pkl of a large checkpoint is a few hundred KB; bound what we are willing to walk.
MAX_PICKLE_BYTES = 64 * 1024 * 1024
_MAX_PICKLE_OPS = 5_000_000

FORMATS = ("safetensors", "pickle", "gguf", "diffusers", "unknown")

FAMILY_NAMES = {
    "sd1": "SD1", "sd2": "SD2", "sdxl": "SDXL", "sdxl-refiner": "SDXL refiner", "sd3": "SD3", "flux": "Flux",
    "chroma": "Chroma", "pixart": "PixArt", "sana": "Sana", "hunyuan": "Hunyuan-DiT", "hunyuan-video": "HunyuanVideo",
    "auraflow": "AuraFlow", "sd-cascade": "Stable Cascade", "kolors": "Kolors", "lumina": "Lumina",
}


KIND_NAMES = {"checkpoint": "checkpoint", "lora": "LoRA", "vae": "VAE", "embedding": "embedding",
              "controlnet": "ControlNet", "upscaler": "upscaler", "other": "model (other)"}


@dataclass(frozen=True)
class Probe:
    """What a model file is, and why we think so.

    `variant` is a model variant ("inpaint", "v-prediction", "instruct-pix2pix", "schnell", …); for a LoRA it
    names a LyCORIS algorithm that is not plain LoRA ("loha", "lokr", "oft", "dora", "ia3", "full") or is None.
    """

    kind: Optional[str]
    family: Optional[str]
    variant: Optional[str]
    format: str
    reasons: tuple = ()
    metadata: dict = field(default_factory=dict, hash=False)

    @property
    def summary(self) -> str:
        """One line, e.g. "SDXL checkpoint (safetensors)" or "unknown file (pickle)"."""
        words = []
        if self.family:
            words.append(FAMILY_NAMES.get(self.family, self.family))
        if self.variant:
            words.append(self.variant)
        words.append(KIND_NAMES.get(self.kind, "unknown file"))
        return f"{' '.join(words)} ({self.format})"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "family": self.family, "variant": self.variant, "format": self.format,
                "reasons": list(self.reasons), "metadata": dict(self.metadata), "summary": self.summary}


# ============================================================================================ readers


def _show(path) -> str:
    return Path(path).name or str(path)


def _refetch_hint() -> str:
    return "download it again, or check that the link points to the model file itself"


def _sniff(head: bytes) -> Optional[str]:
    """A word for what non-model bytes look like, for error messages; None when they look binary."""
    text = head.lstrip()[:64].lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in text:
        return "an HTML page (often a login or error page saved in place of the model; a CivitAI model may need a token)"
    if text.startswith((b"{", b"[")):
        return "a JSON document (often an API error saved in place of the model)"
    if text.startswith(b"<?xml") or text.startswith(b"<error"):
        return "an XML document (often a storage error page)"
    if text.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the file itself (use the 'resolve' link, not 'blob')"
    return None


def read_safetensors_header(path) -> dict:
    """The JSON header of a safetensors file (tensor entries and "__metadata__"), reading only the header.

    Raises InputError with a one-line message when the file is not safetensors, is corrupt or is truncated.
    """
    name = _show(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise InputError(f"{name} is not a safetensors file: only {size} bytes long; {_refetch_hint()}")
            (length,) = struct.unpack("<Q", head)
            if length == 0 or length > MAX_HEADER_BYTES or length > size - 8:
                more = f.read(56)
                sniffed = _sniff(head + more)
                if sniffed:
                    raise InputError(f"{name} is not a safetensors file: it is {sniffed}; {_refetch_hint()}")
                if 0 < length <= MAX_HEADER_BYTES and more[:1] == b"{":
                    raise InputError(f"{name} is truncated: its safetensors header should be {length} bytes but the "
                                     f"file holds only {size - 8} after the length field; {_refetch_hint()}")
                raise InputError(
                    f"{name} is not a safetensors file: its header length {length} is impossible for a "
                    f"{size}-byte file (limit {MAX_HEADER_BYTES}); {_refetch_hint()}")
            raw = f.read(length)
    except FileNotFoundError:
        raise InputError(f"{name}: no such file; check the path") from None
    except IsADirectoryError:
        raise InputError(f"{name} is a folder, not a safetensors file") from None
    except PermissionError:
        raise InputError(f"{name} cannot be read (permission denied); check the file's permissions") from None
    if len(raw) < length:
        raise InputError(f"{name} is truncated inside its safetensors header; {_refetch_hint()}")
    if not raw.lstrip()[:1] == b"{":
        raise InputError(f"{name} is not a safetensors file: the header is not JSON; {_refetch_hint()}")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{name} has a corrupt safetensors header (bad JSON: {str(exc).splitlines()[0]}); "
                         f"{_refetch_hint()}") from None
    if not isinstance(header, dict):
        raise InputError(f"{name} has a corrupt safetensors header (not a JSON object); {_refetch_hint()}")
    data_len = size - 8 - length
    end = 0
    for key, entry in header.items():
        if key == "__metadata__":
            if not isinstance(entry, dict):
                raise InputError(f"{name} has a corrupt safetensors header (__metadata__ is not an object); "
                                 f"{_refetch_hint()}")
            continue
        if not (isinstance(entry, dict) and isinstance(entry.get("dtype"), str)
                and isinstance(entry.get("shape"), list) and all(isinstance(d, int) and d >= 0 for d in entry["shape"])
                and isinstance(entry.get("data_offsets"), list) and len(entry["data_offsets"]) == 2
                and all(isinstance(o, int) and o >= 0 for o in entry["data_offsets"])
                and entry["data_offsets"][0] <= entry["data_offsets"][1]):
            raise InputError(f"{name} has a corrupt safetensors header (bad entry for tensor {key[:80]!r}); "
                             f"{_refetch_hint()}")
        end = max(end, entry["data_offsets"][1])
    if end > data_len:
        raise InputError(f"{name} is truncated: its header promises {end} bytes of tensor data but only {data_len} "
                         f"are there; {_refetch_hint()}")
    return header


def _shapes_from_header(header: dict) -> tuple[dict, dict]:
    meta = header.get("__metadata__") or {}
    metadata = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
    shapes = {k: list(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    return shapes, metadata


# ------------------------------------------------------------------------------------------------ GGUF

_GGUF_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


class _BoundedReader:
    """Reads from `f`, refusing to go past `limit` bytes in total (a corrupt count cannot make us read the file)."""

    def __init__(self, f, limit: int):
        self.f, self.left = f, limit

    def read(self, n: int) -> bytes:
        if n < 0 or n > self.left:
            raise ValueError("header larger than the limit")
        data = self.f.read(n)
        if len(data) < n:
            raise ValueError("file ends inside the header")
        self.left -= n
        return data

    def readline(self) -> bytes:  # pickletools needs it for text opcodes
        data = self.f.readline(min(self.left, 1 << 20))
        self.left -= len(data)
        return data


def _read_gguf(f, size: int) -> tuple[dict, dict]:
    """Tensor name → torch-order shape, and the short string key/values, from a GGUF header."""
    r = _BoundedReader(f, min(size, MAX_HEADER_BYTES))
    if r.read(4) != b"GGUF":
        raise ValueError("no GGUF magic")
    (version,) = struct.unpack("<I", r.read(4))
    if version < 2:
        raise ValueError(f"GGUF version {version} is too old to read")
    n_tensors, n_kv = struct.unpack("<QQ", r.read(16))
    if n_tensors > 1_000_000 or n_kv > 1_000_000:
        raise ValueError("impossible tensor or key counts")

    def string() -> str:
        (n,) = struct.unpack("<Q", r.read(8))
        return r.read(n).decode("utf-8", "replace")

    def value(vtype: int):
        if vtype in _GGUF_SCALAR:
            fmt = _GGUF_SCALAR[vtype]
            return struct.unpack(fmt, r.read(struct.calcsize(fmt)))[0]
        if vtype == 8:
            return string()
        if vtype == 9:
            itype, count = struct.unpack("<IQ", r.read(12))
            if itype in _GGUF_SCALAR:  # skip fixed-size arrays without decoding
                r.read(struct.calcsize(_GGUF_SCALAR[itype]) * count)
            else:
                for _ in range(count):
                    value(itype)
            return None
        raise ValueError(f"unknown GGUF value type {vtype}")

    kv = {}
    for _ in range(n_kv):
        key = string()
        (vtype,) = struct.unpack("<I", r.read(4))
        val = value(vtype)
        if isinstance(val, str) and len(val) <= 1024:
            kv[key] = val
    shapes = {}
    for _ in range(n_tensors):
        tname = string()
        (n_dims,) = struct.unpack("<I", r.read(4))
        if n_dims > 8:
            raise ValueError("impossible tensor rank")
        dims = struct.unpack(f"<{n_dims}Q", r.read(8 * n_dims))
        r.read(12)  # ggml type + offset
        shapes[tname] = list(reversed(dims))  # ggml lists the fastest-moving dimension first
    return shapes, kv


# ------------------------------------------------------------------------------------------------ pickles


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
# Callables a torch state dict legitimately references; anything else is reported.
_EXPECTED_GLOBALS = re.compile(
    r"^(torch(\.[\w.]+)? \w+|collections (OrderedDict|defaultdict)|numpy(\.[\w.]+)? \w+|_codecs encode|"
    r"builtins (set|frozenset|dict|list|tuple|slice|bytearray|int|float|complex|str|bytes|object)|"
    r"pytorch_lightning(\.[\w.]+)? \w+|lightning_fabric(\.[\w.]+)? \w+|argparse Namespace)$")
_REBUILD_TENSOR = {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_qtensor",
                   "_rebuild_sparse_tensor", "_rebuild_device_tensor_from_numpy", "_rebuild_meta_tensor_no_storage"}


def _walk_pickle(stream) -> tuple[object, list[str], set[str]]:
    """Evaluate a pickle symbolically with `pickletools.genops`; returns (result, strings, globals)."""
    stack: list = []
    memo: dict = {}
    strings: list[str] = []
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
            return (stack[-1] if stack else None), strings, globals_seen
        if name in ("BINUNICODE", "SHORT_BINUNICODE", "UNICODE", "BINUNICODE8", "SHORT_BINSTRING", "BINSTRING",
                    "STRING"):
            if isinstance(arg, bytes):
                arg = arg.decode("latin-1")
            strings.append(arg)
            stack.append(arg)
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


def _pickle_keys(result) -> dict:
    """keys → shapes (None when unknown) from a symbolically walked pickle."""
    if isinstance(result, dict):
        has_tensors = any(isinstance(v, _Tensor) for v in _flatten(result).values())
        for wrapper in _WRAPPERS:
            inner = result.get(wrapper)
            if isinstance(inner, dict) and inner and (
                    not has_tensors or any(isinstance(v, _Tensor) for v in _flatten(inner).values())):
                result = inner
                break
    leaves = _flatten(result) if isinstance(result, dict) else {}
    tensors = {k: v.shape for k, v in leaves.items() if isinstance(v, _Tensor)}
    if tensors:
        return tensors
    # No torch tensors at all (a plain pickle): the names alone are all we have.
    return {k: None for k in leaves}


_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _read_pickle_keys(f, size: int, is_zip: bool) -> tuple[dict, set, str]:
    """(keys → shapes, globals referenced, how it was read) from a torch zip file or a legacy pickle stream."""
    if is_zip:
        with zipfile.ZipFile(f) as zf:
            names = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") <= 1]
            if not names:
                raise ValueError("a zip file without data.pkl (not a torch file)")
            info = zf.getinfo(sorted(names, key=len)[0])
            if info.file_size > MAX_PICKLE_BYTES:
                raise ValueError(f"its data.pkl is {info.file_size} bytes, over the {MAX_PICKLE_BYTES} limit")
            with zf.open(info) as member:
                data = member.read(MAX_PICKLE_BYTES + 1)
        result, _strings, globals_seen = _walk_pickle(io.BytesIO(data))
        return _pickle_keys(result), globals_seen, f"read {info.filename} from the zip"
    reader = _BoundedReader(f, min(size, MAX_PICKLE_BYTES))
    first, _s, globals_seen = _walk_pickle(reader)
    if first == _TORCH_LEGACY_MAGIC:  # legacy torch.save: magic, protocol, sys_info, then the object
        _walk_pickle(reader)
        _walk_pickle(reader)
        result, _s, more = _walk_pickle(reader)
        globals_seen |= more
        return _pickle_keys(result), globals_seen, "walked the legacy torch pickle"
    return _pickle_keys(first), globals_seen, "walked the pickle"


# ============================================================================================ classifier

_LORA_STRONG = re.compile(
    r"(\.lora_(up|down|mid|A|B)\.weight|\.lora\.(up|down)\.weight|_lora\d*\.(up|down)\.weight|"
    r"\.lora_magnitude_vector(\.weight)?|\.dora_scale|\.hada_(w1|w2)_(a|b)|\.hada_t[12]|"
    r"\.lokr_(w1|w2)(_a|_b)?|\.lokr_t2|\.oft_blocks|\.oft_diag|\.oft_R(\.weight)?)$")
_KOHYA_PREFIX = re.compile(r"^(lora_(unet|te\d?|transformer)_|lycoris_|lora_te_text_model)")
_TE2 = re.compile(r"^(lora_te2_|text_encoder_2\.|te2\.|lora_te2\.|base_model\.model\.text_encoder_2\.)")
_ATTN2_K = re.compile(r"attn2[._](processor[._])?to_k")
_DOWN = re.compile(r"(lora_down|lora\.down|lora_A|_lora\.down|hada_w[12]_b)(\.weight)?$")
_TE_K = re.compile(r"self_attn[._](k|q|v)_proj")
_TE_LAYER = re.compile(r"encoder[._]layers[._](\d+)[._]")
_TBLOCK_N = re.compile(r"(?:transformer_blocks)[._]([1-9]\d*)[._]")
_RESBLOCK = re.compile(r"^model\.diffusion_model\.|^(input_blocks|middle_block|output_blocks)\.")


def _shape(shapes: dict, key: str):
    value = shapes.get(key)
    return list(value) if isinstance(value, (list, tuple)) else None


def _dim(shapes: dict, key: Optional[str], index: int) -> Optional[int]:
    shape = _shape(shapes, key) if key else None
    if not shape:
        return None
    try:
        return shape[index]
    except IndexError:
        return None


def _has_prefix(keys: Iterable[str], *prefixes: str) -> Optional[str]:
    for k in keys:
        if k.startswith(prefixes):
            return k
    return None


def _has_part(keys: Iterable[str], *parts: str) -> Optional[str]:
    for k in keys:
        if any(p in k for p in parts):
            return k
    return None


def _family_from_metadata(metadata: dict) -> tuple[Optional[str], Optional[str], Optional[str]]:
    """(family, variant, source) hinted by kohya / modelspec metadata."""
    family = variant = source = None
    arch = (metadata.get("modelspec.architecture") or "").lower()
    base = (metadata.get("ss_base_model_version") or "").lower()
    for text, src in ((arch, "modelspec.architecture"), (base, "ss_base_model_version")):
        if not text:
            continue
        if "flux" in text:
            family = "flux"
        elif "cascade" in text:
            family = "sd-cascade"
        elif "xl" in text:
            family = "sdxl-refiner" if "refiner" in text else "sdxl"
        elif "-3" in text or "sd3" in text or "v3" in text:
            family = "sd3"
        elif "v2" in text or "sd2" in text:
            family = "sd2"
        elif "v1" in text or "sd1" in text:
            family = "sd1"
        elif "pixart" in text:
            family = "pixart"
        elif "auraflow" in text:
            family = "auraflow"
        elif "hunyuan" in text:
            family = "hunyuan"
        if family:
            source = f"{src} = {text!r}"
            if "768-v" in text or text.endswith(("-v", "_v")) or "_v_" in text:
                variant = "v-prediction"
            break
    if family is None and metadata.get("ss_v2", "").lower() == "true":
        family, source = "sd2", "ss_v2 = True"
    pred = (metadata.get("modelspec.prediction_type") or "").lower()
    if pred in ("v", "v_prediction", "v-prediction") or metadata.get("ss_v_parameterization", "").lower() == "true":
        variant = "v-prediction"
    return family, variant, source


def _width_family(width: Optional[int]) -> Optional[str]:
    return {768: "sd1", 1024: "sd2", 2048: "sdxl", 1280: "sdxl-refiner"}.get(width)


def _cross_attn(shapes: dict, keys: Iterable[str]) -> tuple[Optional[int], Optional[str]]:
    """Context width of a UNet's cross-attention (to_k in-features), and the key it came from."""
    for k in keys:
        if k.endswith("attn2.to_k.weight"):
            width = _dim(shapes, k, 1)
            if width:
                return width, k
    return None, None


def _fmt_shape(shapes: dict, key: str) -> str:
    shape = _shape(shapes, key)
    return f" {shape}" if shape is not None else ""


class _Verdict:
    """Collects reasons while a rule decides; becomes a Probe."""

    def __init__(self, kind=None, family=None, variant=None):
        self.kind, self.family, self.variant, self.reasons = kind, family, variant, []

    def why(self, text: str) -> "_Verdict":
        self.reasons.append(text)
        return self


def inspect_keys(keys_to_shapes: dict, metadata: Optional[dict] = None, *, format: str = "safetensors") -> Probe:
    """Classify a state dict from its key names and shapes (shape None = unknown) plus optional metadata."""
    metadata = dict(metadata or {})
    shapes = {str(k): v for k, v in keys_to_shapes.items()}
    for prefix in ("base_model.model.",):  # peft's raw save wraps every key
        if shapes and all(k.startswith(prefix) for k in shapes):
            shapes = {k[len(prefix):]: v for k, v in shapes.items()}
    keys = sorted(shapes)
    verdict = None
    if keys:
        for rule in (_embedding, _lora, _controlnet, _diffusion_model, _vae, _upscaler, _other_known):
            verdict = rule(shapes, keys, metadata)
            if verdict is not None:
                break
    if verdict is None:
        verdict = _Verdict()
        if not keys:
            verdict.why("no tensors in the file")
        else:
            verdict.why(f"no known key pattern; first keys: {', '.join(keys[:3])}")
        meta_family, _v, source = _family_from_metadata(metadata)
        if meta_family:
            verdict.why(f"metadata says {FAMILY_NAMES.get(meta_family, meta_family)} ({source}), kind still unknown")
    meta_family, meta_variant, source = _family_from_metadata(metadata)
    if verdict.kind is not None and meta_family:
        if verdict.family is None:
            verdict.family = meta_family
            verdict.why(f"family from metadata: {source}")
        elif meta_family != verdict.family and verdict.kind in ("lora", "checkpoint"):
            verdict.why(f"metadata says {meta_family} ({source}) but the keys say {verdict.family}; trusting the keys")
    if verdict.kind in ("checkpoint", "lora") and meta_variant == "v-prediction" and verdict.variant is None:
        verdict.variant = "v-prediction"
        verdict.why("metadata marks it v-prediction")
    if format == "pickle":
        verdict.why("pickle format: loading it runs code from the file; prefer a .safetensors version")
    assert verdict.kind in KINDS or verdict.kind is None
    return Probe(verdict.kind, verdict.family, verdict.variant, format, tuple(verdict.reasons), metadata)


# ------------------------------------------------------------------------------------------------ rules


def _embedding(shapes, keys, metadata):
    if "clip_g" in shapes and len(keys) <= 4:
        return _Verdict("embedding", "sdxl").why(
            f"has clip_g{_fmt_shape(shapes, 'clip_g')} (+ clip_l): an SDXL textual-inversion embedding")
    key = "emb_params" if "emb_params" in shapes else _has_prefix(keys, "string_to_param.")
    if key:
        width = _dim(shapes, key, -1)
        family = {768: "sd1", 1024: "sd2"}.get(width)
        verdict = _Verdict("embedding", family).why(f"has {key}{_fmt_shape(shapes, key)}: a textual-inversion embedding")
        if family:
            verdict.why(f"vectors are {width} wide → {FAMILY_NAMES[family]} text encoder")
        else:
            verdict.why("vector width unknown: family undecided")
        return verdict
    # diffusers `learned_embeds`: {"<token>": [768]} and nothing else
    if len(keys) <= 8 and all("." not in k and k not in ("weight", "bias") for k in keys):
        widths = {_dim(shapes, k, -1) for k in keys}
        ranks = {len(_shape(shapes, k) or []) for k in keys}
        if len(widths) == 1 and widths <= {768, 1024} and ranks <= {1, 2}:
            width = widths.pop()
            family = "sd1" if width == 768 else "sd2"
            return _Verdict("embedding", family).why(
                f"only token vectors ({', '.join(keys[:3])}) {width} wide: a diffusers textual-inversion embedding "
                f"→ {FAMILY_NAMES[family]}")
    return None


def _lora(shapes, keys, metadata):
    strong = [k for k in keys if _LORA_STRONG.search(k)]
    kohya = [k for k in keys if _KOHYA_PREFIX.search(k)]
    if not strong and len(kohya) * 2 < len(keys):
        return None
    lora_like = len(set(strong) | set(kohya) | {k for k in keys if k.endswith(".alpha")})
    if lora_like * 2 < len(keys):
        return None
    verdict = _Verdict("lora")
    algo = None
    if any(".hada_" in k for k in strong):
        algo, label = "loha", "LyCORIS LoHa (hada_w1_a …)"
    elif any(".lokr_" in k for k in strong):
        algo, label = "lokr", "LyCORIS LoKr (lokr_w1 …)"
    elif any(".oft_" in k for k in strong):
        algo, label = "oft", "OFT (oft_blocks …)"
    elif any(k.endswith((".dora_scale", ".lora_magnitude_vector", ".lora_magnitude_vector.weight")) for k in strong):
        algo, label = "dora", "DoRA (dora_scale / lora_magnitude_vector)"
    elif any(k.endswith((".lora_A.weight", ".lora_B.weight")) for k in strong):
        label = "peft-style LoRA (lora_A / lora_B)"
    elif any(k.endswith((".lora.down.weight", "_lora.down.weight")) or "_lora.down" in k for k in strong):
        label = "diffusers-style LoRA (lora.down / lora.up)"
    elif any(k.endswith(".lora_down.weight") for k in strong):
        conv = any(len(_shape(shapes, k) or []) == 4 and (_shape(shapes, k) or [0, 0, 1])[2] > 1
                   for k in strong if k.endswith(".lora_down.weight"))
        label = "kohya LoCon (lora_down on 3×3 convs)" if conv else "kohya LoRA (lora_down / lora_up)"
    elif any(k.endswith(".on_input") for k in kohya):
        algo, label = "ia3", "LyCORIS IA3 (on_input)"
    elif any(k.endswith((".diff", ".diff_b")) for k in kohya):
        algo, label = "full", "LyCORIS full (diff)"
    elif any(k.endswith((".a1.weight", ".b1.weight")) for k in kohya):
        algo, label = "glora", "LyCORIS GLoRA (a1 / b1)"
    else:
        label = "kohya-named network weights"
    verdict.variant = algo
    verdict.why(f"{lora_like} of {len(keys)} keys are {label} weights → LoRA")
    _lora_family(shapes, keys, verdict)
    return verdict


def _lora_family(shapes, keys, verdict):
    flux = _has_part(keys, "double_blocks", "single_blocks", "single_transformer_blocks")
    if flux:
        verdict.family = "flux"
        verdict.why(f"targets {flux[:90]} (Flux double/single blocks) → Flux")
        return
    joint = _has_part(keys, "joint_blocks", "context_block")
    if joint:
        verdict.family = "sd3"
        verdict.why(f"targets {joint[:90]} (SD3 joint blocks) → SD3")
        return
    dit = _has_prefix(keys, "transformer.", "lora_transformer_", "diffusion_model.")
    if dit:
        widths = {_dim(shapes, k, -1) for k in keys if _DOWN.search(k) and ("to_k" in k or "attn" in k)}
        if 3072 in widths:
            verdict.family = "flux"
            verdict.why("transformer attention takes 3072 features (Flux width) → Flux")
            return
        if widths & {1536, 2432}:
            verdict.family = "sd3"
            verdict.why("transformer attention takes 1536/2432 features (SD3 widths) → SD3")
            return
    te2 = next((k for k in keys if _TE2.search(k)), None)
    if te2:
        verdict.family = "sdxl"
        verdict.why(f"has a second text encoder ({te2[:60]}…) → SDXL")
        return
    deep = next((k for k in keys if _TBLOCK_N.search(k) and not k.startswith(("lora_te", "text_encoder"))), None)
    attn_width, attn_key = None, None
    for k in keys:
        if _ATTN2_K.search(k) and _DOWN.search(k):
            attn_width, attn_key = _dim(shapes, k, 1), k
        elif _ATTN2_K.search(k) and k.endswith(".lokr_w1"):
            # LoKr: the weight is kron(w1, w2), so its in-features are w1's columns × w2's columns
            w2 = _dim(shapes, k[: -len("w1")] + "w2", 1)
            w1 = _dim(shapes, k, 1)
            attn_width, attn_key = (w1 * w2 if w1 and w2 else None), k
        if attn_width:
            break
    family = _width_family(attn_width) if attn_width else None
    if family:
        verdict.family = family
        verdict.why(f"cross-attention to_k takes {attn_width}-wide context ({attn_key[:90]}) → {FAMILY_NAMES[family]}")
        return
    if deep:
        verdict.family = "sdxl"
        verdict.why(f"targets {deep[:90]} (more than one transformer block per level, SDXL only) → SDXL")
        return
    for k in keys:
        if _TE_K.search(k) and _DOWN.search(k):
            width = _dim(shapes, k, 1)
            if width in (768, 1024):
                verdict.family = "sd1" if width == 768 else "sd2"
                verdict.why(f"text-encoder attention takes {width} features ({k[:80]}) → {FAMILY_NAMES[verdict.family]}")
                return
    layers = [int(m.group(1)) for k in keys for m in [_TE_LAYER.search(k)] if m]
    if layers and max(layers) >= 12:
        verdict.family = "sd2"
        verdict.why(f"text-encoder layer {max(layers)} exists (CLIP-L has 12, OpenCLIP-H 24) → SD2")
        return
    if not verdict.family:
        verdict.why("key names and shapes do not tell the base model")


def _controlnet(shapes, keys, metadata):
    marker = (_has_prefix(keys, "control_model.") or _has_prefix(keys, "controlnet_cond_embedding.")
              or _has_prefix(keys, "input_hint_block.") or _has_prefix(keys, "controlnet_blocks.")
              or _has_prefix(keys, "controlnet_x_embedder.") or _has_prefix(keys, "lllite_")
              or ("lora_controlnet" in shapes and "lora_controlnet"))
    if not marker:
        return None
    verdict = _Verdict("controlnet").why(f"has {marker.split('.')[0]}… → ControlNet")
    if _has_part(keys, "double_blocks", "single_transformer_blocks", "single_blocks") or "controlnet_x_embedder.weight" in shapes:
        verdict.family = "flux"
        return verdict.why("built on Flux blocks → Flux")
    if _has_part(keys, "joint_blocks", "pos_embed_input"):
        verdict.family = "sd3"
        return verdict.why("built on SD3 joint blocks → SD3")
    if marker.startswith("lllite_") or marker == "lora_controlnet":
        verdict.family = "sdxl"
        return verdict.why(f"{marker.rstrip('_')} is an SDXL-only ControlNet format → SDXL")
    width, key = _cross_attn(shapes, keys)
    if width and _width_family(width):
        verdict.family = _width_family(width)
        return verdict.why(f"cross-attention to_k takes {width}-wide context → {FAMILY_NAMES[verdict.family]}")
    add = _has_part(keys, "add_embedding.linear_1.weight", "label_emb.0.0.weight")
    if add:
        verdict.family = "sdxl"
        return verdict.why(f"has {add} (size/crop conditioning) → SDXL")
    return verdict.why("cross-attention width unknown: family undecided")


def _diffusion_model(shapes, keys, metadata):
    """Whole checkpoints and their diffusion model (UNet or transformer) alone."""
    strip = "model.diffusion_model."
    inner = {k[len(strip):] if k.startswith(strip) else k: k for k in keys}
    wrapped = any(k.startswith(strip) for k in keys)
    where = "model.diffusion_model." if wrapped else ""

    def has(key):
        return key in inner

    def full(key):
        return inner.get(key)

    verdict = None
    if has("double_blocks.0.img_attn.norm.key_norm.scale") or (
            _has_prefix(inner, "double_blocks.") and _has_prefix(inner, "single_blocks.")):
        if _has_prefix(inner, "distilled_guidance_layer."):
            verdict = _Verdict("checkpoint", "chroma").why(f"has {where}double_blocks + distilled_guidance_layer → Chroma")
        else:
            verdict = _Verdict("checkpoint", "flux").why(f"has {where}double_blocks / single_blocks → Flux")
            img_in = _dim(shapes, full("img_in.weight") or "", 1) if full("img_in.weight") else None
            if img_in == 384:
                verdict.variant = "inpaint"
                verdict.why("img_in takes 384 features (Flux Fill) → inpaint")
            elif img_in == 128:
                verdict.variant = "depth"
                verdict.why("img_in takes 128 features → Flux Depth")
            elif not has("guidance_in.in_layer.weight") and not has("guidance_in.in_layer.bias"):
                verdict.variant = "schnell"
                verdict.why("no guidance_in (no distilled guidance) → Flux schnell")
    elif _has_prefix(inner, "joint_blocks."):
        verdict = _Verdict("checkpoint", "sd3").why(f"has {where}joint_blocks (MMDiT) → SD3")
        if has("joint_blocks.37.x_block.mlp.fc1.weight"):
            verdict.why("38 joint blocks → SD3.5 Large")
    elif has("double_layers.0.attn.w2q.weight") or has("cond_seq_linear.weight"):
        verdict = _Verdict("checkpoint", "auraflow").why("has double_layers / cond_seq_linear → AuraFlow")
    elif has("clip_txt_mapper.weight") or has("down_blocks.1.0.channelwise.0.weight"):
        stage = "stage-c" if has("clip_txt_mapper.weight") else "stage-b"
        verdict = _Verdict("checkpoint", "sd-cascade", stage).why(
            f"has {'clip_txt_mapper' if stage == 'stage-c' else 'channelwise blocks'} → Stable Cascade {stage}")
    elif has("txt_in.individual_token_refiner.blocks.0.adaLN_modulation.1.bias"):
        verdict = _Verdict("checkpoint", "hunyuan-video").why("has txt_in.individual_token_refiner → HunyuanVideo")
    elif has("mlp_t5.0.weight") or has("text_embedding_padding"):
        verdict = _Verdict("checkpoint", "hunyuan").why("has mlp_t5 / text_embedding_padding → Hunyuan-DiT")
    elif has("blocks.0.cross_attn.q_linear.weight"):
        if _has_prefix(inner, "blocks.0.mlp.inverted_conv."):
            verdict = _Verdict("checkpoint", "sana").why("has cross_attn.q_linear + GLUMBConv mlp → Sana")
        else:
            verdict = _Verdict("checkpoint", "pixart").why("has blocks.*.cross_attn.q_linear (+ y_embedder) → PixArt")
    elif _has_prefix(inner, "input_blocks.") and (wrapped or _has_prefix(inner, "output_blocks.", "middle_block.")):
        verdict = _unet_checkpoint(shapes, keys, inner, wrapped)
    if verdict is None:
        return None
    if verdict.family not in ("sd1", "sd2", "sdxl", "sdxl-refiner"):
        if not _has_prefix(keys, "text_encoders.", "cond_stage_model.", "conditioner.", "vae.", "first_stage_model."):
            verdict.why("diffusion model only: text encoders and VAE come separately")
    if "edm_vpred.sigma_max" in shapes:
        verdict.variant = "edm-v-prediction"
        verdict.why("has edm_vpred.sigma_max → EDM v-prediction (CosXL style)")
    elif "v_pred" in shapes:
        verdict.variant = "v-prediction"
        verdict.why("has a v_pred key → v-prediction")
    if "ztsnr" in shapes:
        verdict.why("has a ztsnr key → trained with zero terminal SNR")
    return verdict


def _unet_checkpoint(shapes, keys, inner, wrapped):
    verdict = _Verdict("checkpoint")
    if wrapped:
        verdict.why("has model.diffusion_model.* (UNet in the original Stable Diffusion layout) → checkpoint")
    else:
        verdict.why("has input_blocks / middle_block / output_blocks (original-layout UNet) → checkpoint")
    width, wkey = _cross_attn(shapes, [k for k in keys if _RESBLOCK.search(k)])
    te_family, te_reason = None, None
    if _has_prefix(keys, "conditioner.embedders.1."):
        te_family, te_reason = "sdxl", "has conditioner.embedders.1 (second text encoder, OpenCLIP bigG) → SDXL"
    elif _has_prefix(keys, "conditioner.embedders.0.model."):
        te_family, te_reason = ("sdxl-refiner",
                                "has only conditioner.embedders.0.model (OpenCLIP bigG, no CLIP-L) → SDXL refiner")
    elif _has_prefix(keys, "cond_stage_model.model."):
        te_family, te_reason = "sd2", "has cond_stage_model.model.* (OpenCLIP-H text encoder) → SD2"
    elif _has_prefix(keys, "cond_stage_model.transformer."):
        te_family, te_reason = "sd1", "has cond_stage_model.transformer.* (CLIP-L text encoder) → SD1"
    label = next((k for k in keys if k.endswith("label_emb.0.0.weight")), None)
    label_family = {2816: "sdxl", 2560: "sdxl-refiner"}.get(_dim(shapes, label, 1) if label else None)
    width_family = _width_family(width)
    if width_family:
        verdict.family = width_family
        verdict.why(f"cross-attention to_k takes {width}-wide context ({wkey}{_fmt_shape(shapes, wkey)}) "
                    f"→ {FAMILY_NAMES[width_family]}")
        if te_family and te_family != width_family:
            verdict.why(f"note: text-encoder keys suggest {te_family}; trusting the UNet")
        elif te_reason:
            verdict.why(te_reason)
    elif te_family:
        verdict.family = te_family
        verdict.why(te_reason)
    elif label_family:
        verdict.family = label_family
        verdict.why(f"label_emb takes {_dim(shapes, label, 1)} features → {FAMILY_NAMES[label_family]}")
    else:
        verdict.why("cross-attention width unknown: family undecided")
    if not _has_prefix(keys, "cond_stage_model.", "conditioner.", "first_stage_model."):
        verdict.why("UNet only: text encoder and VAE are not inside")
    conv_in = next((k for k in keys if k.endswith("input_blocks.0.0.weight") and _RESBLOCK.search(k)), None)
    channels = _dim(shapes, conv_in, 1) if conv_in else None
    if channels == 9:
        verdict.variant = "inpaint"
        verdict.why(f"{conv_in} takes 9 input channels → inpainting model")
    elif channels == 8:
        verdict.variant = "instruct-pix2pix"
        verdict.why(f"{conv_in} takes 8 input channels → InstructPix2Pix")
    if "edm_mean" in shapes and verdict.family == "sdxl":
        verdict.variant = "playground-v2.5"
        verdict.why("has edm_mean / edm_std (EDM) → Playground v2.5")
    return verdict


_VAE_PARTS = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")
_VAE_EXTRA = ("model_ema.", "loss.")


def _vae(shapes, keys, metadata):
    for prefix in ("", "first_stage_model.", "vae."):
        body = [k[len(prefix):] for k in keys if k.startswith(prefix)]
        if len(body) != len(keys) and prefix:
            continue
        core = [k for k in body if k.startswith(_VAE_PARTS)]
        if not core or any(not k.startswith(_VAE_PARTS + _VAE_EXTRA) for k in body):
            continue
        has_enc = any(k.startswith("encoder.") for k in core)
        has_dec = any(k.startswith("decoder.") for k in core)
        conv = any(k.endswith(("conv_in.weight", "conv_out.weight")) or ".layers." in k for k in core)
        if not (has_enc and has_dec and conv) and not (has_dec and "decoder.conv_in.weight" in body):
            continue
        diffusers = any(".down_blocks." in k or ".up_blocks." in k or ".mid_block." in k for k in core)
        verdict = _Verdict("vae")
        verdict.why(f"only {prefix}encoder / decoder{' / quant_conv' if any(k.startswith('quant_conv') for k in core) else ''} "
                    f"weights ({'diffusers' if diffusers else 'original'} layout) → VAE")
        latent = _dim(shapes, prefix + "decoder.conv_in.weight", 1)
        if latent == 16:
            verdict.why("16 latent channels: an SD3 / Flux style VAE; which one is undecidable from shapes")
        elif latent == 4:
            verdict.why("4 latent channels: SD1, SD2 and SDXL VAEs have the same shapes; family undecidable")
        else:
            verdict.why("family undecidable from shapes")
        return verdict
    return None


def _upscaler(shapes, keys, metadata):
    def up(why):
        return _Verdict("upscaler").why(why + " → upscaler")

    if "model.0.weight" in shapes and _has_prefix(keys, "model.1.sub."):
        return up("has model.0 + model.1.sub.* (old-architecture ESRGAN)")
    if "conv_first.weight" in shapes:
        if _has_prefix(keys, "RRDB_trunk."):
            return up("has conv_first + RRDB_trunk.* (ESRGAN)")
        if any(k.startswith("body.") and ".rdb" in k for k in keys):
            return up("has conv_first + body.*.rdb* (Real-ESRGAN RRDBNet)")
        if any(k.startswith("layers.") and ".residual_group." in k for k in keys):
            return up("has conv_first + layers.*.residual_group (SwinIR / HAT)")
    if keys and all(re.fullmatch(r"body\.\d+\.(weight|bias)", k) for k in keys) and len(keys) >= 6:
        first = _shape(shapes, "body.0.weight")
        if first is None or (len(first) == 4 and first[1] in (1, 3)):
            return up("only body.N convolutions starting from an image (Real-ESRGAN compact / SRVGGNet)")
    return None


def _other_known(shapes, keys, metadata):
    """Things we recognise that have no folder of their own: reported as kind "other" with why."""
    if _has_prefix(keys, "text_model.encoder.layers.", "text_model.embeddings."):
        width = _dim(shapes, "text_model.embeddings.token_embedding.weight", 1)
        return _Verdict("other").why(f"a CLIP text encoder alone{f' ({width} wide)' if width else ''} → other")
    if "shared.weight" in shapes and _has_prefix(keys, "encoder.block."):
        return _Verdict("other").why("a T5 text encoder alone (shared + encoder.block.*) → other")
    if _has_part(keys, "motion_modules."):
        return _Verdict("other").why("has motion_modules.* (AnimateDiff motion module) → other")
    if _has_prefix(keys, "image_proj.") and _has_prefix(keys, "ip_adapter."):
        return _Verdict("other").why("has image_proj + ip_adapter (IP-Adapter) → other")
    if _has_prefix(keys, "down_blocks.") and _has_prefix(keys, "up_blocks.") and "conv_in.weight" in shapes:
        width, _key = _cross_attn(shapes, keys)
        family = _width_family(width)
        verdict = _Verdict("other", family).why("a diffusers-layout UNet alone (down_blocks / up_blocks), not a "
                                                "whole checkpoint → other")
        if family:
            verdict.why(f"cross-attention to_k takes {width}-wide context → {FAMILY_NAMES[family]}")
        return verdict
    if _has_prefix(keys, "transformer_blocks.") and _has_prefix(keys, "single_transformer_blocks."):
        return _Verdict("other", "flux").why("a diffusers-layout Flux transformer alone → other")
    return None


# ============================================================================================ inspect


def _unknown(fmt: str, *reasons: str, metadata: Optional[dict] = None) -> Probe:
    return Probe(None, None, None, fmt, tuple(reasons), dict(metadata or {}))


def inspect(path) -> Probe:
    """What the model file (or diffusers folder) at `path` is; reads headers only.

    Raises InputError only when `path` does not exist or cannot be read; a readable file of unknown shape
    gives a Probe with kind None and reasons.
    """
    path = Path(path)
    if path.is_dir():
        return _inspect_folder(path)
    name = _show(path)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"{name}: no such file; check the path") from None
    except OSError as exc:
        raise InputError(f"{name} cannot be read ({exc.strerror or exc}); check the path and permissions") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(64)
        f.seek(0)
        if size == 0:
            return _unknown("unknown", "the file is empty")
        if head[:4] == b"GGUF":
            try:
                shapes, kv = _read_gguf(f, size)
            except (ValueError, struct.error) as exc:
                return _unknown("gguf", f"a GGUF file whose header cannot be read ({exc})")
            probe = inspect_keys(shapes, kv, format="gguf")
            arch = kv.get("general.architecture")
            if arch:
                probe = Probe(probe.kind, probe.family, probe.variant, probe.format,
                              probe.reasons + (f"GGUF general.architecture = {arch!r}",), probe.metadata)
            return probe
        is_zip = head[:4] == b"PK\x03\x04"
        # A safetensors length whose low byte is 0x80 looks like a pickle's first byte: the JSON "{" decides.
        (length,) = struct.unpack("<Q", head[:8].ljust(8, b"\0"))
        looks_safetensors = head[8:9] == b"{" and 0 < length <= min(size - 8, MAX_HEADER_BYTES)
        if is_zip or (head[:1] == b"\x80" and not looks_safetensors):
            return _inspect_pickle(f, size, is_zip)
        try:
            header = read_safetensors_header(path)
        except InputError as exc:
            sniffed = _sniff(head)
            return _unknown("unknown", f"not a model file: it is {sniffed}" if sniffed else str(exc))
    shapes, metadata = _shapes_from_header(header)
    return inspect_keys(shapes, metadata, format="safetensors")


def _inspect_pickle(f, size: int, is_zip: bool) -> Probe:
    try:
        shapes, globals_seen, how = _read_pickle_keys(f, size, is_zip)
    except (ValueError, KeyError, IndexError, TypeError, EOFError, zipfile.BadZipFile, struct.error) as exc:
        if is_zip:
            return _unknown("unknown", f"a zip file that is not a torch model ({exc})")
        return _unknown("pickle", f"a pickle whose keys cannot be read without loading it ({exc})")
    probe = inspect_keys(shapes, None, format="pickle")
    extra = (f"{how} with pickletools (nothing was unpickled)",)
    odd = sorted(g.replace(" ", ".") for g in globals_seen if not _EXPECTED_GLOBALS.match(g))
    if odd:
        extra += (f"warning: the pickle calls {', '.join(odd[:5])} when loaded; do not load this file",)
    return Probe(probe.kind, probe.family, probe.variant, probe.format, extra + probe.reasons, probe.metadata)


# ------------------------------------------------------------------------------------------------ diffusers folders

_PIPELINE_FAMILIES = {
    "StableDiffusionXLPipeline": "sdxl", "StableDiffusionXLImg2ImgPipeline": "sdxl",
    "StableDiffusionXLInpaintPipeline": "sdxl", "StableDiffusionXLInstructPix2PixPipeline": "sdxl",
    "StableDiffusionXLControlNetPipeline": "sdxl",
    "StableDiffusion3Pipeline": "sd3", "StableDiffusion3Img2ImgPipeline": "sd3",
    "FluxPipeline": "flux", "FluxImg2ImgPipeline": "flux", "FluxFillPipeline": "flux", "FluxInpaintPipeline": "flux",
    "ChromaPipeline": "chroma",
    "PixArtAlphaPipeline": "pixart", "PixArtSigmaPipeline": "pixart", "SanaPipeline": "sana",
    "HunyuanDiTPipeline": "hunyuan", "AuraFlowPipeline": "auraflow", "KolorsPipeline": "kolors",
    "StableCascadeCombinedPipeline": "sd-cascade", "StableCascadePriorPipeline": "sd-cascade",
    "StableCascadeDecoderPipeline": "sd-cascade", "LuminaText2ImgPipeline": "lumina", "Lumina2Pipeline": "lumina",
}
_COMPONENT_KINDS = {
    "AutoencoderKL": "vae", "AutoencoderTiny": "vae", "ConsistencyDecoderVAE": "vae",
    "ControlNetModel": "controlnet", "ControlNetUnionModel": "controlnet", "ControlNetXSAdapter": "controlnet",
    "FluxControlNetModel": "controlnet", "SD3ControlNetModel": "controlnet",
}


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _inspect_folder(folder: Path) -> Probe:
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        config = _read_json(folder / "config.json")
        cls = config.get("_class_name")
        if cls:
            return _inspect_component(cls, config)
        return _unknown("unknown", "a folder without model_index.json (not a diffusers pipeline)")
    index = _read_json(index_path)
    cls = str(index.get("_class_name") or "")
    if not cls:
        return _unknown("diffusers", "model_index.json has no _class_name")
    verdict = _Verdict("checkpoint").why(f"a diffusers folder: model_index.json names {cls}")
    unet = _read_json(folder / "unet" / "config.json")
    family = _PIPELINE_FAMILIES.get(cls)
    if family == "sdxl" and not _component_present(index, "text_encoder") and _component_present(index, "text_encoder_2"):
        family = "sdxl-refiner"
        verdict.why("text_encoder_2 only (no CLIP-L) → SDXL refiner")
    if family is None and cls.startswith(("StableDiffusion", "LatentConsistencyModel", "AltDiffusion")):
        width = unet.get("cross_attention_dim")
        if isinstance(width, list):
            width = width[0] if width else None
        if width is None:
            width = _read_json(folder / "text_encoder" / "config.json").get("hidden_size")
        family = {768: "sd1", 1024: "sd2"}.get(width)
        if family:
            verdict.why(f"cross_attention_dim / text encoder width {width} → {FAMILY_NAMES[family]}")
    if family is None:
        for word, fam in (("XL", "sdxl"), ("StableDiffusion3", "sd3"), ("Flux", "flux"), ("PixArt", "pixart"),
                          ("Cascade", "sd-cascade"), ("Hunyuan", "hunyuan"), ("AuraFlow", "auraflow")):
            if word in cls:
                family = fam
                break
    verdict.family = family
    if family and not verdict.reasons[1:]:
        verdict.why(f"{cls} → {FAMILY_NAMES.get(family, family)}")
    if family is None:
        verdict.why("pipeline class not known: family undecided")
    in_channels = unet.get("in_channels")
    if in_channels == 9 or "Inpaint" in cls or "Fill" in cls:
        verdict.variant = "inpaint"
        verdict.why("inpainting pipeline (9-channel UNet or Inpaint/Fill class)")
    elif in_channels == 8 or "InstructPix2Pix" in cls:
        verdict.variant = "instruct-pix2pix"
        verdict.why("InstructPix2Pix (8-channel UNet)")
    scheduler = _read_json(folder / "scheduler" / "scheduler_config.json")
    if scheduler.get("prediction_type") == "v_prediction" and verdict.variant is None:
        verdict.variant = "v-prediction"
        verdict.why("scheduler prediction_type is v_prediction")
    return Probe(verdict.kind, verdict.family, verdict.variant, "diffusers", tuple(verdict.reasons), {})


def _component_present(index: dict, name: str) -> bool:
    value = index.get(name)
    return isinstance(value, list) and len(value) == 2 and value[0] is not None and value[1] is not None


def _inspect_component(cls: str, config: dict) -> Probe:
    kind = _COMPONENT_KINDS.get(cls, "other")
    verdict = _Verdict(kind).why(f"a diffusers component folder: config.json names {cls} → {kind}")
    if kind == "controlnet":
        if cls.startswith("Flux"):
            verdict.family = "flux"
        elif cls.startswith("SD3"):
            verdict.family = "sd3"
        elif config.get("addition_embed_type") == "text_time":
            verdict.family = "sdxl"
        else:
            verdict.family = {768: "sd1", 1024: "sd2", 2048: "sdxl"}.get(config.get("cross_attention_dim"))
        if verdict.family:
            verdict.why(f"its config → {FAMILY_NAMES[verdict.family]}")
    elif kind == "vae":
        verdict.why("family undecidable from a VAE config")
    elif cls == "UNet2DConditionModel":
        verdict.family = _width_family(config.get("cross_attention_dim"))
        verdict.why("a UNet alone, not a whole pipeline")
    return Probe(verdict.kind, verdict.family, verdict.variant, "diffusers", tuple(verdict.reasons), {})
