"""Hostile pickles: a walk that must end (a DAG of shared memo references), and globals that must be seen however
they are spelled or reached. Every file is built opcode by opcode here; nothing is ever unpickled by the probe."""
from __future__ import annotations

import pickle
import struct

import pytest

from colab_sd.probe import inspect
from colab_sd.probe.pickles import TOO_COMPLEX, read_pickle_keys, unexpected_globals


def text(s: str) -> bytes:
    raw = s.encode()
    return b"\x8c" + bytes([len(raw)]) + raw  # SHORT_BINUNICODE


def get(i: int) -> bytes:
    return b"j" + struct.pack("<I", i)  # LONG_BINGET


def put(i: int) -> bytes:
    return b"r" + struct.pack("<I", i)  # LONG_BINPUT


PROTO, STOP, MARK, EMPTY_DICT, SETITEMS, SETITEM = b"\x80\x04", b".", b"(", b"}", b"u", b"s"
TUPLE2, REDUCE, STACK_GLOBAL, NONE, EMPTY_TUPLE, TUPLE1 = b"\x86", b"R", b"\x93", b"N", b")", b"\x85"


def dag_of_dicts(levels: int = 30, fan: int = 8) -> bytes:
    """dict_i = {"k0": dict_{i-1}, …, "k{fan-1}": dict_{i-1}}: a few hundred bytes a naive walk needs fan**levels
    steps for."""
    out = PROTO + EMPTY_DICT + put(0)
    for level in range(1, levels + 1):
        out += EMPTY_DICT + put(level) + MARK
        for k in range(fan):
            out += text(f"k{k}") + get(level - 1)
        out += SETITEMS
    return out + STOP


def dag_of_tuples(levels: int = 120) -> bytes:
    """t_i = (t_{i-1}, t_{i-1}) used as a dict key and as a global's name: hashing or printing it takes 2**levels."""
    out = PROTO + EMPTY_TUPLE + put(0)
    for level in range(1, levels + 1):
        out += get(level - 1) + get(level - 1) + TUPLE2 + put(level)
    top = get(levels)
    return (PROTO + out[2:] + EMPTY_DICT + top + NONE + SETITEM + text("model") + EMPTY_DICT + SETITEM
            + top + text("x") + STACK_GLOBAL + b"0" + STOP)  # b"0" = POP: the global is fetched, then dropped


@pytest.mark.timeout(2)  # the old walk never ended; this one stops at its node budget
@pytest.mark.parametrize("maker", [dag_of_dicts, dag_of_tuples], ids=["dicts", "tuples"])
def test_a_dag_of_shared_references_ends_quickly_and_is_unsafe(tmp_path, maker):
    data = maker()
    assert len(data) < 4096
    path = tmp_path / "dag.ckpt"
    path.write_bytes(data)
    result = inspect(path)
    assert result.kind is None and result.format == "pickle"
    warnings = [r for r in result.reasons if r.startswith("warning:")]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    if maker is dag_of_dicts:
        assert "too complex to inspect" in warnings[0] and "do not load" in warnings[0]
    else:  # the tuple is never hashed nor printed; as a global's name it is a computed name, so unsafe too
        assert "computed at load time" in warnings[0]


@pytest.mark.timeout(2)  # the old walk never ended; this one stops at its node budget
def test_too_complex_is_an_unexpected_global_for_every_caller(tmp_path):
    path = tmp_path / "dag.pth"
    path.write_bytes(dag_of_dicts())
    with open(path, "rb") as fh:
        scan = read_pickle_keys(fh, path.stat().st_size, False)
    assert scan.too_complex and TOO_COMPLEX in unexpected_globals(scan.globals)


def test_real_state_dicts_stay_fine(tmp_path):
    import safetensors_factory as sf

    for fmt in ("zip", "legacy"):
        result = inspect(sf.make_checkpoint(tmp_path / f"m-{fmt}.ckpt", "sdxl", fmt=fmt))
        assert (result.kind, result.family) == ("checkpoint", "sdxl")
        assert not [r for r in result.reasons if r.startswith("warning:")]


# ------------------------------------------------------------------------------------------------- spellings


def state_dict_with(trap: bytes) -> bytes:
    """{"weight": <trap>}: a small state dict whose one value is built by `trap` (opcodes leaving one item)."""
    return PROTO + EMPTY_DICT + text("weight") + trap + SETITEM + STOP


SPELLINGS = {
    # STACK_GLOBAL whose strings were memoised earlier, then fetched back
    "stack-global-via-memo": (text("os") + put(50) + b"0" + text("system") + put(51) + b"0"
                              + get(50) + get(51) + STACK_GLOBAL + text("id") + TUPLE1 + REDUCE, "os.system"),
    # GLOBAL with a trailing space in the name / a leading space in the module
    "global-odd-spacing": (b"cos\nsystem \n" + text("id") + TUPLE1 + REDUCE, "spelled oddly"),
    "global-leading-space": (b"c builtins\neval\n" + text("1") + TUPLE1 + REDUCE, "spelled oddly"),
    # builtins.getattr(…) reaching a function by name
    "builtins-getattr": (b"cbuiltins\ngetattr\n" + b"cbuiltins\nset\n" + text("__init__") + TUPLE2 + REDUCE,
                         "builtins.getattr"),
    # the Python 2 spelling that the unpickler maps to builtins
    "python2-builtin": (b"c__builtin__\neval\n" + text("1") + TUPLE1 + REDUCE, "builtins.eval"),
    # a dotted name (protocol 4 walks attributes): reaching globals through an allowed function
    "dotted-attribute": (text("torch._utils") + text("_rebuild_tensor_v2.__globals__") + STACK_GLOBAL,
                         "spelled oddly"),
    # an allowed module's helper that imports anything by name
    "torch-import-dotted-name": (b"ctorch._utils\n_import_dotted_name\n" + text("os.system") + TUPLE1 + REDUCE
                                 + text("id") + TUPLE1 + REDUCE, "torch._utils._import_dotted_name"),
    # an allowed class whose construction keeps a disallowed callable (defaultdict(os.system))
    "allowed-class-holding-disallowed": (b"ccollections\ndefaultdict\n" + b"cos\nsystem\n" + TUPLE1 + REDUCE,
                                         "os.system"),
    # a global whose name is computed by a call at load time
    "computed-name": (b"cbuiltins\nstr\n" + text("os") + TUPLE1 + REDUCE + text("system") + STACK_GLOBAL,
                      "computed at load time"),
    # INST names its class inline
    "inst": (MARK + text("id") + b"ios\nsystem\n", "os.system"),
    # an extension code names a global through copyreg's registry
    "extension-code": (b"\x82\x07", "extension code 7"),
}


@pytest.mark.parametrize("trap,named", SPELLINGS.values(), ids=SPELLINGS.keys())
def test_a_global_is_seen_however_it_is_spelled_or_reached(tmp_path, trap, named):
    data = state_dict_with(trap)
    list(__import__("pickletools").genops(data))  # a well-formed pickle
    path = tmp_path / "trap.ckpt"
    path.write_bytes(data)
    result = inspect(path)
    warnings = [r for r in result.reasons if r.startswith("warning:")]
    assert len(warnings) == 1 and named in warnings[0] and "do not load" in warnings[0], result.reasons


def test_the_real_unpickler_would_reach_what_the_probe_names():
    """The spellings are real: Python's own unpickler asks for these globals (stopped before anything runs)."""
    asked = []

    class Recorder(pickle.Unpickler):
        def find_class(self, module, name):
            asked.append((module, name))
            raise pickle.UnpicklingError("stop")

    import io

    for trap, _named in SPELLINGS.values():
        try:
            Recorder(io.BytesIO(state_dict_with(trap))).load()
        except (pickle.UnpicklingError, ValueError):
            pass
    assert ("os", "system") in asked and ("builtins", "getattr") in asked and ("__builtin__", "eval") in asked
    assert ("torch._utils", "_rebuild_tensor_v2.__globals__") in asked and ("os", "system ") in asked
