"""The pipeline cache: one loaded model at a time, with its LoRAs, VAE and embeddings applied in place.

- The same model (same file, unchanged, same device and dtype) is never reloaded; `loads` counts real loads.
- LoRAs are peft adapters on the loaded model: a new LoRA is loaded once, weights change with `set_adapters`,
  and "no LoRA" disables them, so switching LoRAs or weights never reloads the base.
- A different model first releases the old one (references dropped, `gc.collect()`, CUDA cache emptied), so a
  T4 never holds two SDXL models at once.
"""
from __future__ import annotations

import gc
import logging
import re
import threading
import time
import warnings
from pathlib import Path
from typing import Callable, Optional

from ..errors import InputError
from ..events import Info
from ..probe import FAMILY_NAMES
from .families import lora as family_lora
from .loader import load_pipeline, load_vae, pipeline_classes, quiet_loading
from .models import FAMILY_LABEL, Addon, ModelRef

log = logging.getLogger("colab_sd.generation")

MAX_ADAPTERS = 8  # loaded LoRAs kept for quick switching; the least recently used beyond this are dropped


def check_lora(addon: Addon, ref: ModelRef) -> None:
    """Refuse, before anything loads, a LoRA the model cannot use as the probe describes it:

    - one for another family (the probe's verdict, e.g. a Flux or SD3 LoRA on an SD1/SDXL model), naming both;
    - a LyCORIS DoRA in kohya form (`.dora_scale` keys): diffusers' loader drops the magnitude part with only a
      log warning, so the image would silently differ from A1111's. (peft-form DoRA, `lora_magnitude_vector`,
      is applied by peft and passes.)
    - a layout diffusers loads without applying it (an SD3 LoRA in kohya layout: `families.lora.refusal`).
    A Flux LoRA on a Chroma model passes (`families.lora.COMPATIBLE`); a LoRA the probe could only assume to be
    Flux.1 takes the family its CivitAI sidecar names (`families.lora.lora_family`).
    """
    family = family_lora.lora_family(addon.family, addon.path, addon.meta)
    if not family_lora.compatible(family, ref.family):
        theirs = FAMILY_LABEL.get(family) or FAMILY_NAMES.get(family, family)
        ours = FAMILY_LABEL.get(ref.family, ref.family)
        raise InputError(f"LoRA {addon.name} is for {theirs} but {ref.name} is {ours}: pick a LoRA made for {ours}")
    if addon.variant == "dora" and _has_key_ending(addon.path, ".dora_scale"):
        raise InputError(f"LoRA {addon.name} is a LyCORIS DoRA (dora_scale weights), which diffusers cannot apply "
                         f"(it would drop the DoRA part silently): use a plain LoRA version of it")
    refused = family_lora.refusal(addon.name, family_lora.lora_keys(addon.path), ref.family,
                                  FAMILY_LABEL.get(ref.family, ref.family))
    if refused:
        raise InputError(refused)


def _has_key_ending(path: Path, suffix: str) -> bool:
    if path.suffix != ".safetensors":
        return False
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return any(k.endswith(suffix) for k in fh.keys())


def adapter_name(addon: Addon) -> str:
    """A peft-safe adapter name from the LoRA's stem (peft uses it in module attribute paths)."""
    return re.sub(r"\W", "_", addon.name) or "lora"


class Entry:
    """A loaded pipeline and the add-ons applied to it."""

    def __init__(self, ref: ModelRef, device: str, dtype, pipe, config_source: Optional[Path],
                 config: Optional[str] = None):
        self.ref, self.device, self.dtype, self.pipe = ref, device, dtype, pipe
        self.config = config
        self.config_source = config_source
        self.base_vae = pipe.vae
        # The model's own scheduler settings, kept apart: every call swaps in a new scheduler, and building the
        # next one on the last one's config would carry one sampler's options into the next call.
        self.scheduler_config = dict(pipe.scheduler.config)
        self.vae_path: Optional[Path] = None
        self.adapters: dict[str, Path] = {}  # adapter name → file, in least-recently-used order
        self.embeddings: dict[str, Path] = {}  # prompt token → file
        self.offloaded = False
        self._img2img = None

    @property
    def key(self) -> tuple:
        return (self.ref.key, self.device, str(self.dtype), self.config)

    def img2img(self):
        """The image-to-image pipeline over the same modules (no copy, no load)."""
        if self._img2img is None:
            from .families import run as family_run
            from .families.second import img2img_pipeline

            fam = family_run.family_of(self.ref)
            if fam.is_transformer:  # its own img2img class, by diffusers' from_pipe
                self._img2img = img2img_pipeline(self.pipe, fam)
        if self._img2img is None:
            _, cls = pipeline_classes(self.ref.family)
            extra = {"requires_safety_checker": False} if self.ref.family != "sdxl" else {}
            components = {k: v for k, v in self.pipe.components.items() if k in cls._get_signature_keys(cls)[0]}
            self._img2img = cls(**components, **extra)
            self._img2img.set_progress_bar_config(disable=True)
        return self._img2img

    # ------------------------------------------------------------------------------------------ placement

    def place(self, low_vram: bool, vae_tiling: bool, sequential: bool = False) -> None:
        """Whole model on the device, model CPU offload (`low_vram`), or sequential CPU offload (`sequential`: layer by
        layer, what a memory plan chooses when even the largest part does not fit the GPU), CUDA only; VAE tiling
        on or off. `self.offloaded` is False, "model" or "sequential"."""
        cuda = self.device.startswith("cuda")
        want = ("sequential" if sequential else "model" if low_vram else False) if cuda else False
        if want != self.offloaded or not getattr(self, "_placed", False):
            if self.offloaded:
                self.pipe.remove_all_hooks()
            self._offload(want)
            self.offloaded = want
            self._placed = True
            self._img2img = None
        if low_vram or vae_tiling:
            self.pipe.vae.enable_tiling()
        else:
            self.pipe.vae.disable_tiling()

    # ------------------------------------------------------------------------------------------ add-ons

    def apply_vae(self, addon: Optional[Addon]) -> None:
        path = addon.path if addon else None
        if path == self.vae_path:
            return
        if addon is None:
            vae = self.base_vae
        else:
            vae = load_vae(addon.path, self.config_source, self.ref.family, self.dtype)
        self._swap_vae(vae)
        self.vae_path = path

    def _swap_vae(self, vae) -> None:
        offloaded = self.offloaded
        if offloaded:
            self.pipe.remove_all_hooks()
        if self.pipe.vae is not self.base_vae:
            self.pipe.vae.to("cpu")  # the override being replaced: off the GPU before it is dropped
        self.pipe.register_modules(vae=vae)
        if offloaded:
            self._offload(offloaded)
        else:
            vae.to(self.device)
        self._img2img = None

    def _offload(self, mode) -> None:
        if mode == "sequential":
            self.pipe.enable_sequential_cpu_offload(device=self.device)
        elif mode == "model":
            self.pipe.enable_model_cpu_offload(device=self.device)
        else:
            self.pipe.to(self.device)

    def apply_loras(self, loras: list[tuple[Addon, float]], emit: Callable) -> None:
        wanted: dict[str, float] = {}
        for addon, weight in loras:
            check_lora(addon, self.ref)
            name = adapter_name(addon)
            if self.adapters.get(name) not in (None, addon.path):
                self._drop([name])
            if name not in self.adapters:
                self._load_lora(addon, name, emit)
            self.adapters[name] = self.adapters.pop(name)  # most recently used last
            wanted[name] = weight
        if wanted:
            self.pipe.enable_lora()
            self.pipe.set_adapters(list(wanted), adapter_weights=list(wanted.values()))
        elif self.adapters:
            self.pipe.disable_lora()
        spare = [n for n in self.adapters if n not in wanted]
        if len(self.adapters) > MAX_ADAPTERS:
            self._drop(spare[: len(self.adapters) - MAX_ADAPTERS])

    def _load_lora(self, addon: Addon, name: str, emit: Callable) -> None:
        started = time.monotonic()
        try:
            with quiet_loading(), warnings.catch_warnings():
                # peft warns on every second adapter ("Already found a peft_config"): expected, we keep several.
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                source, note = family_lora.prepared(addon.path, family_lora.lora_keys(addon.path), self.ref.family)
                self.pipe.load_lora_weights(source, adapter_name=name)
        except Exception as err:
            try:  # a half-applied adapter would leak into the next image
                if name in _adapter_list(self.pipe):
                    self.pipe.delete_adapters([name])
            except Exception:
                log.debug("cleanup of adapter %s failed", name, exc_info=True)
            first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
            raise InputError(f"LoRA {addon.name} could not be applied to {self.ref.name} "
                             f"({FAMILY_LABEL[self.ref.family]}): {first}") from err
        if name not in _adapter_list(self.pipe):  # nothing matched: it must never reach set_adapters
            raise InputError(f"LoRA {addon.name} has no layer that matches {self.ref.name} "
                             f"({FAMILY_LABEL[self.ref.family]}): it is for another kind of model")
        if not family_lora.touched(self.pipe, name):  # loaded, yet the image would be the base model's
            self.pipe.delete_adapters([name])
            raise InputError(f"LoRA {addon.name} changes no layer of {self.ref.name} "
                             f"({FAMILY_LABEL[self.ref.family]}): its weights are all zero or target layers this "
                             f"model does not have")
        self.adapters[name] = addon.path
        emit(Info(f"LoRA {addon.name} loaded in {time.monotonic() - started:.1f}s" + (f"; {note}" if note else ""),
                  job=self.ref.name))

    def _drop(self, names: list[str]) -> None:
        names = [n for n in names if n in self.adapters]
        if names:
            self.pipe.delete_adapters(names)
            for n in names:
                self.adapters.pop(n, None)

    def apply_embeddings(self, embeddings: list[Addon], emit: Callable, explicit: set[str]) -> list[Addon]:
        """Load embeddings not loaded yet; returns the ones usable with this model.

        One made for another family is skipped with an Info event when the prompt merely mentions its name, and
        refused when it was asked for by name.
        """
        usable = []
        for addon in embeddings:
            if addon.family and addon.family != self.ref.family and addon.family in FAMILY_LABEL:
                message = (f"embedding {addon.name} is for {FAMILY_LABEL[addon.family]}, not "
                           f"{FAMILY_LABEL[self.ref.family]}")
                if addon.name in explicit:
                    raise InputError(message + ": remove it or pick a matching model")
                emit(Info(message + "; its name is left as plain text", job=self.ref.name))
                continue
            if addon.name not in self.embeddings:
                self._load_embedding(addon)
                self.embeddings[addon.name] = addon.path
            usable.append(addon)
        return usable

    def _load_embedding(self, addon: Addon) -> None:
        pipe = self.pipe
        try:
            with quiet_loading():
                self._load_vectors(pipe, addon)
        except InputError:
            raise
        except Exception as err:
            first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
            raise InputError(f"embedding {addon.name} could not be loaded into {self.ref.name}: {first}") from err

    def _load_vectors(self, pipe, addon: Addon) -> None:
        if self.ref.family != "sdxl":
            pipe.load_textual_inversion(str(addon.path), token=addon.name)
            return
        # SDXL embeddings hold one set of vectors per text encoder.
        state = _load_tensors(addon.path)
        if "clip_l" not in state or "clip_g" not in state:
            raise InputError(f"embedding {addon.name} has no clip_l / clip_g vectors: it is not an SDXL embedding")
        pipe.load_textual_inversion(state["clip_l"], token=addon.name, text_encoder=pipe.text_encoder,
                                    tokenizer=pipe.tokenizer)
        pipe.load_textual_inversion(state["clip_g"], token=addon.name, text_encoder=pipe.text_encoder_2,
                                    tokenizer=pipe.tokenizer_2)

    def release(self) -> None:
        for name in ("pipe", "base_vae", "_img2img"):
            setattr(self, name, None)


def _adapter_list(pipe) -> set[str]:
    try:
        return {name for names in pipe.get_list_adapters().values() for name in names}
    except Exception:
        return set()


def _load_tensors(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    data = torch.load(str(path), map_location="cpu", weights_only=True)
    return data if isinstance(data, dict) else {}


class PipelineCache:
    """Holds at most one loaded model; thread-safe (one generation at a time uses it)."""

    def __init__(self):
        self.lock = threading.RLock()
        self.entry: Optional[Entry] = None
        self.loads = 0

    def get(self, ref: ModelRef, device: str, dtype, config: Optional[str], emit: Callable) -> tuple[Entry, bool]:
        """(entry, loaded_now) for the model; loads it (after releasing any other) when it is not the current one."""
        with self.lock:
            key = (ref.key, device, str(dtype), config)
            if self.entry is not None and self.entry.key == key:
                return self.entry, False
            if self.entry is not None:
                emit(Info(f"releasing {self.entry.ref.name} before loading {ref.name}", job=ref.name))
                self.release()
            how = "single file" if ref.format == "single_file" else "diffusers folder"
            pred = f", {ref.reasons[-1]}" if ref.prediction != "epsilon" and ref.reasons else ""
            pred += f"; {ref.choice}" if getattr(ref, "choice", "") else ""  # a family's variant and why
            emit(Info(f"loading {ref.name} ({FAMILY_LABEL[ref.family]}, {how}{pred}) on {device}", job=ref.name))
            started = time.monotonic()
            pipe, source = load_pipeline(ref, dtype, config, emit, device)
            self.loads += 1
            self.entry = Entry(ref, device, dtype, pipe, source, config)
            emit(Info(f"loaded {ref.name} in {time.monotonic() - started:.1f}s", job=ref.name))
            return self.entry, True

    def release(self) -> None:
        """Drop the loaded model and give its memory back (RAM and VRAM)."""
        with self.lock:
            entry, self.entry = self.entry, None
            if entry is not None:
                entry.release()
                del entry
            free_memory()


def free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.ipc_collect()
    except Exception:  # freeing is best effort; a failure here must not hide the real error
        log.debug("emptying the CUDA cache failed", exc_info=True)


CACHE = PipelineCache()
