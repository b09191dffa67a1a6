"""The memory plan: where each part of a model goes and at what precision, decided before anything is loaded.

`decide(family, parts, machine, …)` is a pure function of the file sizes and parameter counts (`Part`), the
machine (`Machine`: GPU free memory, whether it computes bf16, RAM available) and the family's needs
(`Family.fp16`, `vae_fp32`). It returns a `Plan`: placement ("gpu", "model_offload", "sequential_offload",
"cpu"), the compute dtype, the text encoders' precision ("fp16", "8-bit", "4-bit") and one line to show. A plan
that cannot fit says so (`Plan.fits` False) with what would (a smaller GGUF, another precision).

Rules, in order (the README's table is printed from them by `scripts/memory_plan_table.py`):
1. dtype: fp32 on the CPU; bf16 on GPUs that compute it (compute capability ≥ 8); else fp16, or fp32 for
   families that produce NaNs in fp16 (`Family.fp16 == "no"`).
2. Sizes at that dtype: a GGUF transformer stays packed (its file size); safetensors are params × 2 bytes (an fp8
   file is upcast on load, so twice its size; a ComfyUI scaled fp8 file too, rescaled into that dtype); the VAE in
   fp32 where the family needs it.
3. Try, first fit wins: everything on the GPU (text encoders fp16, then 8-bit, then 4-bit); model CPU offload
   (the largest part on the GPU at a time, every part parked in RAM) with fp16, 8-bit, 4-bit encoders;
   sequential offload (layer by layer: tiny VRAM, same RAM). 8/4-bit need bitsandbytes and CUDA. Within each
   placement a plain fp8 transformer file is tried upcast to 16-bit first, then kept fp8 (`Plan.storage == "fp8"`:
   its file size plus 5% resident, upcast one layer per forward; families.fp8_vram loads it without a 16-bit copy).
4. RAM: whatever is parked in RAM (offload) plus the load-time copy (GGUF and safetensors files are memory-mapped
   — a GGUF through `families.gguf_mmap`, not diffusers' reader, which copies the whole file into RAM — so one
   tensor at a time when loading straight to the GPU) must stay under the
   available RAM less a safety margin (a scaled fp8 file is rescaled into the compute dtype in RAM before it
   loads, so its load copy is its resident size wherever it goes); VRAM: the resident parts plus activations.
Source of the sizes and behaviours: the families reference §3–§4 (offload parks components in their stored dtype;
T5 fp8 / fp16 sizes) and benchmarks/bench_load_memory.py (peak anonymous memory of a 6.7 GB Flux Q4 GGUF load).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from ..errors import InputError

GB = 1_000_000_000
RAM_MARGIN = int(1.0 * GB)  # kept free in RAM: Python, the notebook, decoded images
PLACEMENTS = ("gpu", "model_offload", "sequential_offload", "cpu")
TE_PRECISIONS = ("fp16", "8-bit", "4-bit")
# bytes per parameter of GGUF quant levels (file size / params of released Flux / Z-Image GGUFs, reference §3)
GGUF_LEVELS = (("Q8_0", 1.07), ("Q6_K", 0.83), ("Q5_K_M", 0.69), ("Q4_K_M", 0.57), ("Q3_K_M", 0.47))


@dataclass(frozen=True)
class Machine:
    """What the plan fits into. Sizes in bytes; `vram_free` 0 means no GPU."""

    name: str
    vram_free: int
    ram_available: int
    bf16: bool = False  # the GPU computes bf16 fast (compute capability ≥ 8)
    bitsandbytes: bool = False  # 8-bit / 4-bit text encoders possible (bitsandbytes installed, CUDA)

    @property
    def cuda(self) -> bool:
        return self.vram_free > 0

    @classmethod
    def t4(cls, bitsandbytes: bool = True) -> "Machine":
        """A free Colab T4: 15 GB of VRAM, 12.7 GB of RAM of which ~10.7 GB are free once torch is imported."""
        return cls("T4", int(15.0 * GB), int(10.7 * GB), bf16=False, bitsandbytes=bitsandbytes)

    @classmethod
    def detect(cls, device: str) -> "Machine":
        """This machine, now: free VRAM on `device` (torch.cuda.mem_get_info) and MemAvailable."""
        ram = _ram_available()
        if not str(device).startswith("cuda"):
            return cls("CPU", 0, ram)
        import torch

        index = torch.device(device).index or 0
        free, _total = torch.cuda.mem_get_info(index)
        major, _minor = torch.cuda.get_device_capability(index)
        try:
            import bitsandbytes  # noqa: F401

            bnb = True
        except Exception:
            bnb = False
        return cls(torch.cuda.get_device_name(index), int(free), ram, bf16=major >= 8, bitsandbytes=bnb)


def _ram_available() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int((os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")))


@dataclass(frozen=True)
class Part:
    """One loadable part: role ("transformer", "unet", "text_encoder…", "vae"), parameters (billions), bytes of
    its file, and how it is stored ("bf16", "fp16", "fp32", "fp8", "fp8-scaled" (ComfyUI scaled fp8), "gguf")."""

    role: str
    params: float
    file_bytes: int
    stored: str = "bf16"

    @property
    def is_encoder(self) -> bool:
        return self.role.startswith("text_encoder")

    def resident(self, dtype: str, te: str = "fp16", vae_fp32: bool = False) -> int:
        """Bytes in memory once loaded for compute at `dtype`."""
        if self.stored == "gguf":
            return int(self.file_bytes * 1.02)  # stays packed; dequantized one layer at a time
        if self.stored == "fp8-kept":  # fp8 weights as stored; norms / embedders / pads and one layer upcast
            return int(self.file_bytes * 1.05)
        width = 4 if dtype == "fp32" else 2
        if self.role == "vae" and vae_fp32:
            width = 4
        if self.is_encoder and dtype != "fp32":
            width = {"fp16": 2, "8-bit": 1.1, "4-bit": 0.6}[te]
        return int(self.params * GB * width)

    def load_copy(self, dtype: str, to_gpu: bool) -> int:
        """RAM the load itself holds beyond the mapped file: a scaled fp8 file is rescaled into a whole state dict
        in `dtype` first (families.fp8); a safetensors or GGUF file (memory-mapped, families.gguf_mmap) loaded
        straight to the GPU passes one tensor at a time; one loaded to the CPU is the resident size."""
        if self.stored == "fp8-scaled":
            return self.resident(dtype)
        if self.stored == "fp8-kept":  # the file's tensors are read into RAM as they are, then placed
            return self.file_bytes
        return int(0.5 * GB) if to_gpu else self.resident(dtype)


@dataclass(frozen=True)
class Plan:
    placement: str
    dtype: str
    text_encoder: str
    fits: bool
    vram_need: int
    ram_need: int
    line: str
    suggestion: str = ""
    steps: tuple = field(default=(), compare=False)  # every option tried, with why it was rejected
    storage: str = ""  # "fp8": the plain fp8 transformer stays fp8, upcast per layer (families.fp8_vram)

    def summary(self) -> dict:
        return {"placement": self.placement, "dtype": self.dtype, "text_encoder": self.text_encoder,
                "storage": self.storage or None, "fits": self.fits, "vram_need_gb": round(self.vram_need / GB, 1),
                "ram_need_gb": round(self.ram_need / GB, 1), "line": self.line}


def activations(family, width: int = 0, height: int = 0) -> int:
    """VRAM for activations at the family's native size (attention, VAE decode): rule of thumb, 1.5 GB for the
    transformer families at 1024², 1 GB for UNet ones, scaled with the pixel count."""
    side = family.size
    pixels = (width or side) * (height or side)
    base = 1.5 * GB if family.is_transformer else 1.0 * GB
    return int(base * max(0.25, pixels / (1024 * 1024)))


def pick_dtype(family, machine: Machine, requested: Optional[str] = None) -> str:
    if requested:
        return {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}.get(requested, requested)
    if not machine.cuda:
        return "fp32"
    if machine.bf16:
        return "bf16"
    return "fp32" if family.fp16 == "no" else "fp16"


def decide(family, parts: list[Part], machine: Machine, *, dtype: Optional[str] = None,
           placement: Optional[str] = None, text_encoder: Optional[str] = None, width: int = 0,
           height: int = 0, label: str = "") -> Plan:
    """The first placement and text-encoder precision that fit (or the ones asked for), as a `Plan`."""
    if placement and placement not in PLACEMENTS:
        raise InputError(f"unknown placement {placement!r}: use one of {', '.join(PLACEMENTS)}")
    if text_encoder and text_encoder not in TE_PRECISIONS:
        raise InputError(f"unknown text encoder precision {text_encoder!r}: use fp16, 8-bit or 4-bit")
    dt = pick_dtype(family, machine, dtype)
    label = label or family.name
    if not machine.cuda:
        return _cpu_plan(family, parts, machine, dt, label)
    if text_encoder in ("8-bit", "4-bit") and not machine.bitsandbytes:
        raise InputError(f"{text_encoder} text encoders need bitsandbytes on a CUDA GPU: pip install bitsandbytes, "
                         f"or leave the text encoders' precision to the memory plan")
    act = activations(family, width, height)
    tried = []
    te_options = [text_encoder] if text_encoder else \
        [p for p in TE_PRECISIONS if p == "fp16" or machine.bitsandbytes]
    places = [placement] if placement else ["gpu", "model_offload", "sequential_offload"]
    if not any(p.is_encoder for p in parts):
        te_options = te_options[:1]
    for where in places:
        for kept in _storages(parts, dt):
            for te in te_options:
                vram, ram = _needs(kept, where, dt, te, family.vae_fp32, act)
                ok_v, ok_r = vram <= machine.vram_free, ram <= machine.ram_available - RAM_MARGIN
                storage = "fp8" if kept is not parts else ""
                if ok_v and ok_r:
                    line = _line(label, kept, where, dt, te, family, machine, True)
                    return Plan(where, dt, te, True, vram, ram, line, steps=tuple(tried), storage=storage)
                tried.append(f"{where}{' + transformer fp8' if storage else ''} + encoders {te}: needs "
                             f"{_gb(vram)} VRAM / {_gb(ram)} RAM")
    te_min = te_options[-1]
    vram, _ = _needs(parts, places[0], dt, te_min, family.vae_fp32, act)
    _, ram = _needs(parts, places[-1], dt, te_min, family.vae_fp32, act)
    hint = suggest(family, parts, machine, dt)
    den = next((p for p in parts if p.role in ("transformer", "unet")), None)
    size = f" ({_kind(den)}, {_gb(den.file_bytes)})" if den is not None else ""
    if den is not None and den.stored == "fp8-scaled":  # why a smaller file is refused where a bigger GGUF fits
        size = f" ({_kind(den)}, {_gb(den.file_bytes)}; rescaled into {dt} it is {_gb(den.resident(dt))})"
    line = (f"{label}{size} does not fit this machine ({machine.name}: {_gb(machine.vram_free)} VRAM free, "
            f"{_gb(machine.ram_available)} RAM available): {_PLACE[places[0]]} needs {_gb(vram)} VRAM, "
            f"{_PLACE[places[-1]]} needs {_gb(ram)} RAM" + (f"; would fit: {hint}" if hint else ""))
    return Plan(places[0], dt, te_options[-1], False, vram, ram, line, hint, tuple(tried))


def _storages(parts: list, dt: str) -> list:
    """The parts as stored-and-upcast, then (a plain fp8 transformer in a 16-bit plan) with it kept fp8."""
    kept = [Part(p.role, p.params, p.file_bytes, "fp8-kept") if p.role == "transformer" and p.stored == "fp8"
            else p for p in parts]
    return [parts, kept] if dt in ("fp16", "bf16") and any(p.stored == "fp8-kept" for p in kept) else [parts]


def _needs(parts, where: str, dt: str, te: str, vae_fp32: bool, act: int) -> tuple[int, int]:
    sizes = [p.resident(dt, te, vae_fp32) for p in parts]
    if where == "gpu":
        vram = sum(sizes) + act
        ram = max((p.load_copy(dt, True) for p in parts), default=0)
    elif where == "model_offload":
        vram = max(sizes, default=0) + act
        ram = sum(sizes) + max((p.load_copy(dt, False) - p.resident(dt, te, vae_fp32) for p in parts), default=0)
    else:  # sequential: a layer at a time on the GPU; every weight in RAM
        vram = int(0.5 * GB) + act
        ram = sum(sizes)
    return vram, max(ram, 0)


def _cpu_plan(family, parts, machine, dt, label) -> Plan:
    ram = sum(p.resident(dt) for p in parts)
    fits = ram <= machine.ram_available - RAM_MARGIN
    den = next((p for p in parts if p.role in ("transformer", "unet")), None)
    kind = f" {_kind(den)}" if den is not None and den.stored in ("gguf", "fp8-scaled") else ""
    line = (f"{label}{kind}: on the CPU in {dt} — {'fits' if fits else 'does not fit'} {_gb(ram)} of "
            f"{_gb(machine.ram_available)} RAM")
    return Plan("cpu", dt, "fp16", fits, 0, ram, line)


def suggest(family, parts: list[Part], machine: Machine, dtype: str) -> str:
    """What would fit: the largest GGUF level of the transformer with which a plan fits, else ''."""
    den = next((p for p in parts if p.role in ("transformer", "unet")), None)
    if den is None or not family.is_transformer:
        return ""
    others = [p for p in parts if p is not den]
    for level, per_param in GGUF_LEVELS:
        smaller = Part(den.role, den.params, int(den.params * GB * per_param), "gguf")
        if smaller.file_bytes >= den.file_bytes and den.stored == "gguf":
            continue
        plan = decide(family, [smaller] + others, machine, dtype=dtype, label=family.name)
        if plan.fits:
            return f"a {level} GGUF of {family.name} (~{_gb(smaller.file_bytes)}), {_PLACE[plan.placement]}"
    return f"a GPU with more memory (a {family.name} transformer alone is {_gb(den.params * GB * 2)} in 16-bit)"


def _line(label, parts, where, dt, te, family, machine, fits) -> str:
    den = next((p for p in parts if p.role in ("transformer", "unet")), None)
    words = [_PLACE[where], dt]
    if any(p.is_encoder for p in parts) and te != "fp16":
        words.append(f"text encoders {te}")
    if family.vae_fp32 and dt == "fp16":
        words.append("VAE fp32")
    kind = _kind(den) if den is not None else ""
    return (f"{label}{f' {kind}' if kind else ''}: {', '.join(words)} — fits {_gb(machine.vram_free)} VRAM / "
            f"{_gb(machine.ram_available)} RAM")


_PLACE = {"gpu": "all on GPU", "model_offload": "model CPU offload", "sequential_offload": "sequential CPU offload",
          "cpu": "on the CPU"}


def _kind(part: Part) -> str:
    return {"gguf": "GGUF", "fp8-scaled": "scaled fp8", "fp8-kept": "fp8 (kept fp8, upcast per layer)"}.get(
        part.stored, part.stored)


def _gb(n: float) -> str:
    return f"{n / GB:.1f} GB"
