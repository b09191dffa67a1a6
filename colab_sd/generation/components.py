"""The parts a transformer-only file lacks (text encoders, VAE): found in the library, else fetched, then loaded.

- `find(component, root, config)`: a file in `<root>/text_encoder/` or `<root>/vae/` whose header says it is that
  architecture ("qwen3", "t5-xxl", "clip-l", "clip-g", "vae-kl16", "vae-flux2") *and* has the width the family's
  config expects, so a CLIP-G is never taken for a CLIP-L nor a Klein 9B encoder for a 4B one.
- `missing(family, root, config)`: the components the library lacks, with their sizes: what the panel and the CLI
  announce before fetching anything.
- `fetch(component, root, …)`: the verified, resumable downloader (`colab_sd.api.download`), with its progress
  events, into the library, where the next runtime finds it (on Drive when the library is there).
- `load(component, path, config, dtype)`: the model, built from the config folder's `<role>/config.json` and the
  file (transformers / diffusers read it memory-mapped).
Headers only until `load`; torch is imported there.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable, Optional

from ..errors import GenerationError, InputError
from ..probe.headers import read_gguf, read_safetensors_header

log = logging.getLogger("colab_sd.generation")

_WEIGHTS = (".safetensors", ".sft")


def header(path: Path) -> tuple[dict, dict, dict]:
    """(shapes, dtypes, metadata) of a safetensors or GGUF file, from its header alone."""
    path = Path(path)
    if path.suffix.lower() == ".gguf":
        with open(path, "rb") as fh:
            shapes, kv = read_gguf(fh, path.stat().st_size)
        return shapes, {k: "gguf" for k in shapes}, kv
    head = read_safetensors_header(path)
    meta = head.get("__metadata__") or {}
    shapes = {k: v.get("shape") for k, v in head.items() if k != "__metadata__" and isinstance(v, dict)}
    dtypes = {k: v.get("dtype") for k, v in head.items() if k != "__metadata__" and isinstance(v, dict)}
    return shapes, dtypes, meta


def stored_dtype(dtypes: dict, metadata: Optional[dict] = None, sizes: Optional[dict] = None) -> str:
    """The dtype most of a file's weights are stored in (by element count when `sizes`, key → elements, is given:
    biases and norms outnumber the Linear weights by key): "bf16", "fp16", "fp32", "fp8", "gguf", or "fp8-scaled"
    for a ComfyUI scaled fp8 file (a `scaled_fp8` marker, per-layer `scale_weight` / `weight_scale` /
    `comfy_quant` keys, or `_quantization_metadata` in `metadata`): it is rescaled into the compute dtype in RAM
    before loading (families.fp8), which the memory plan counts differently from a plain fp8 file."""
    from .families.fp8 import is_scale_key

    if any(is_scale_key(str(k).rsplit(":", 1)[-1]) for k in dtypes) or (metadata or {}).get("_quantization_metadata"):
        return "fp8-scaled"
    names = {"BF16": "bf16", "F16": "fp16", "F32": "fp32", "F8_E4M3": "fp8", "F8_E5M2": "fp8", "gguf": "gguf"}
    counts: dict[str, int] = {}
    for key, value in dtypes.items():
        weight = sizes.get(key, 1) if sizes is not None else 1
        counts[names.get(value, "other")] = counts.get(names.get(value, "other"), 0) + weight
    return max(counts, key=counts.get) if counts else "bf16"


def weights_of(path: Path) -> tuple[float, str]:
    """(parameters in billions, stored dtype) of a weights file, or of every .safetensors in a folder; headers only."""
    path = Path(path)
    files = sorted(path.rglob("*.safetensors")) if path.is_dir() else [path]
    count, dtypes, scaled, sizes = 0, {}, {}, {}
    for file in files:
        shapes, types, meta = header(file)
        if isinstance(meta, dict) and meta.get("_quantization_metadata"):
            scaled = {"_quantization_metadata": meta["_quantization_metadata"]}
        for key, shape in shapes.items():
            n = 1
            for d in shape or ():
                n *= int(d)
            count += n
            sizes[f"{file}:{key}"] = n
        dtypes.update({f"{file}:{k}": v for k, v in types.items()})
    return count / 1e9, stored_dtype(dtypes, scaled, sizes)


def arch_of(shapes: dict) -> tuple[Optional[str], Optional[int]]:
    """(architecture, width) of a text encoder or VAE file from its key names; (None, None) when neither."""
    def first(*names):
        for name in names:
            if name in shapes and shapes[name]:
                return shapes[name]
        return None

    qwen = first("model.embed_tokens.weight", "embed_tokens.weight")
    if qwen and any(".self_attn.q_norm." in k for k in shapes):
        return "qwen3", qwen[-1]
    t5 = first("shared.weight", "encoder.embed_tokens.weight")
    if t5 and any(k.startswith("encoder.block.") for k in shapes):
        return "t5-xxl", t5[-1]
    clip = first("text_model.embeddings.token_embedding.weight", "embeddings.token_embedding.weight")
    if clip:
        return ("clip-g" if clip[-1] >= 1280 else "clip-l"), clip[-1]
    conv = first("decoder.conv_in.weight")
    if conv and any(k.startswith("encoder.") for k in shapes):
        if any(k == "bn.running_mean" or k.endswith(".bn.running_mean") for k in shapes):
            return "vae-flux2", conv[1]
        return ("vae-kl16" if conv[1] == 16 else f"vae-kl{conv[1]}"), conv[1]
    return None, None


def _config(config: Path, role: str) -> dict:
    try:
        return json.loads((Path(config) / role / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def expected_width(component, config: Path) -> Optional[int]:
    """The width the family's config wants for this component (hidden size, d_model, latent channels)."""
    cfg = _config(config, component.role)
    if component.kind == "vae":
        return cfg.get("latent_channels")
    cfg = cfg.get("text_config", cfg)
    return cfg.get("hidden_size") or cfg.get("d_model")


def find(component, root: Path, config: Path) -> Optional[Path]:
    """The library file for a component, preferring the one named like its source file; None when absent."""
    folder = Path(root) / component.kind
    if not folder.is_dir():
        return None
    want = expected_width(component, config)
    source_name = os.path.basename(component.file).lower()
    candidates = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or not path.name.lower().endswith(_WEIGHTS):
            continue
        try:
            arch, width = arch_of(header(path)[0])
        except (InputError, OSError, ValueError):
            continue
        clip = {arch, component.arch} <= {"clip-l", "clip-g"}  # the width tells CLIP-L from CLIP-G
        if (arch == component.arch or clip) and (want is None or width == want):
            candidates.append(path)
    hints = tuple(component.hints)
    candidates.sort(key=lambda p: (p.name.lower() != source_name, not any(h in p.name.lower() for h in hints),
                                   p.name))
    return candidates[0] if candidates else None


def found_label(component, path: Path) -> str:
    """"T5-XXL text encoder (fp16)": the component's name with the precision the library's file is stored in (the
    registry's label names the file colab_sd would fetch, e.g. "(fp8, upcast on load)")."""
    stored = weights_of(path)[1]
    words = {"fp8-scaled": "scaled fp8", "gguf": "GGUF"}
    return f"{component.label.split(' (')[0]} ({words.get(stored, stored)})"


def missing(family, root: Path, config: Path) -> list:
    """The family's components that the library lacks (in pipeline order)."""
    return [c for c in family.components if find(c, root, config) is None]


def describe(components: list) -> str:
    """"Qwen3-4B text encoder (bf16) 8.0 GB + Flux VAE (fp32) 0.3 GB from Comfy-Org/z_image_turbo"."""
    parts = [f"{c.label} {c.size / 1e9:.1f} GB" for c in components]
    repos = sorted({c.repo for c in components if c.repo})
    total = sum(c.size for c in components) / 1e9
    about = f" (about {total:.1f} GB)" if len(parts) > 1 else ""
    return f"{' + '.join(parts)}{about} from {', '.join(repos) or 'nowhere known'}"


def remote_size(component, tokens=None) -> int:
    """The component's size as its source reports it now (what is about to be fetched), else its known size
    (offline, or no source)."""
    if not component.repo:
        return component.size
    try:
        from ..sources import resolve

        files = resolve(component.url, tokens).files
        return int(files[0].size or component.size)
    except Exception:  # offline or refused: the plan uses the size recorded in the registry
        log.debug("size of %s not available from its source", component.url, exc_info=True)
        return component.size


def fetch(component, root: Path, on_event: Optional[Callable] = None, tokens=None) -> Path:
    """Download a component into `<root>/<kind>/` through colab_sd's downloader (verified, resumable, with
    progress events); InputError when there is no public source to fetch it from."""
    from ..api import download

    if not component.repo:
        raise InputError(f"{component.label} is not in {Path(root) / component.kind} and colab_sd knows no "
                         f"public source for it: put one there (or use a file that bundles it)")
    return download(component.url, kind=component.kind, models_dir=str(root), on_event=on_event, tokens=tokens)


def _linked_folder(config: Path, role: str, weights: Path, weights_name: str) -> tempfile.TemporaryDirectory:
    """A temporary folder with the role's config.json and a symlink to the weights: what from_pretrained reads."""
    tmp = tempfile.TemporaryDirectory(prefix="colab_sd_component_")
    src = Path(config) / role / "config.json"
    if not src.is_file():
        tmp.cleanup()
        raise GenerationError(f"the config folder {config} has no {role}/config.json")
    (Path(tmp.name) / "config.json").write_bytes(src.read_bytes())
    os.symlink(os.path.abspath(weights), Path(tmp.name) / weights_name)
    return tmp


def _scaled(path: Path) -> bool:
    from .families import fp8

    return fp8.scheme(path) is not None


def load(component, path: Path, config: Path, dtype, quantization=None):
    """The component's model from its file: transformers classes for text encoders, diffusers for VAEs. A text
    encoder stored as ComfyUI scaled fp8 is rescaled into `dtype` first (families.fp8) and given to transformers as
    a state dict.

    `quantization` is a transformers BitsAndBytesConfig for 8/4-bit text encoders (CUDA), or None.
    """
    import diffusers
    import transformers

    from .loader import dtype_kwarg, quiet_loading

    path = Path(path)
    shapes = header(path)[0]
    try:
        with quiet_loading():
            if component.kind == "vae":
                cls = getattr(diffusers, component.cls)
                diffusers_layout = any(".down_blocks." in k or ".mid_block." in k for k in shapes)
                if not diffusers_layout:
                    return cls.from_single_file(str(path), config=str(config), subfolder="vae",
                                                local_files_only=True, **{dtype_kwarg(): dtype})
                with _linked_folder(config, "vae", path, "diffusion_pytorch_model.safetensors") as folder:
                    return cls.from_pretrained(folder, **{dtype_kwarg(): dtype})
            cls = getattr(transformers, component.cls)
            extra = {"quantization_config": quantization} if quantization is not None else {}
            if _scaled(path):  # ComfyUI scaled fp8 (t5xxl_fp8_e4m3fn_scaled): transformers would drop the scales
                from .families import fp8

                settings = cls.config_class.from_pretrained(str(Path(config) / component.role))
                return cls.from_pretrained(None, config=settings, state_dict=fp8.rescaled(path, dtype), dtype=dtype,
                                           **extra)
            with _linked_folder(config, component.role, path, "model.safetensors") as folder:
                return cls.from_pretrained(folder, dtype=dtype, **extra)
    except (GenerationError, InputError):
        raise
    except Exception as err:
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise GenerationError(f"{component.label} could not be loaded from {path.name} ({first}): is it the "
                              f"{component.arch} file this model needs?") from err
