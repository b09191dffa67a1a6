"""Loading a transformer family: a diffusers folder as it is, or a transformer-only file (safetensors or GGUF)
plus its components (library first, else fetched) assembled on the family's config folder.

The transformer comes through diffusers' `from_single_file` (its converters turn ComfyUI / original keys into
diffusers' and read the file memory-mapped; a GGUF keeps its quantized weights packed, dequantized per layer in
`compute_dtype`); the pipeline is then `Pipeline.from_pretrained(config_folder, transformer=…, text_encoder=…,
vae=…)`, which reads only the tokenizers and the scheduler from the folder.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional

from ...errors import GenerationError, InputError
from ...events import Info
from .. import components
from .guards import clamp_fp16, vae_guard

log = logging.getLogger("colab_sd.generation")


# Tokenizer vocabularies by tokenizer class: CLIP's is bundled (generation/configs/clip); the others are fetched
# once from public, ungated repos into the assembled config folder (huggingface_hub's cache first).
TOKENIZERS = {
    "Qwen2Tokenizer": ("Tongyi-MAI/Z-Image-Turbo", "tokenizer", ("vocab.json", "merges.txt", "tokenizer.json")),
    "Qwen2TokenizerFast": ("Tongyi-MAI/Z-Image-Turbo", "tokenizer", ("vocab.json", "merges.txt", "tokenizer.json")),
    "T5TokenizerFast": ("lodestones/Chroma1-HD", "tokenizer", ("spiece.model", "tokenizer.json",
                                                              "special_tokens_map.json")),
}
_VOCAB_FILES = ("tokenizer.json", "vocab.json", "spiece.model")


def config_folder(fam, explicit: Optional[str] = None) -> Path:
    """The diffusers config folder (configs + tokenizers, no weights) for a transformer family: the request's
    `config=` folder, else `<configs root>/<fam.config>/` (assembled there once from the bundled json and the
    tokenizer vocabularies; a folder already there without colab_sd's stamp is the user's or a test's own)."""
    import os

    from ..configs import BUNDLED, configs_root

    if explicit:
        path = Path(os.path.expanduser(str(explicit)))
        if not (path / "model_index.json").is_file():
            raise InputError(f"config {explicit} is not a diffusers folder (no model_index.json)")
        return path
    folder = configs_root() / fam.config
    if (folder / "model_index.json").is_file() and _has_tokenizers(folder, fam):
        return folder
    if not (BUNDLED / fam.config / "model_index.json").is_file():
        raise GenerationError(f"no config folder for {fam.name}: put a diffusers config folder (model_index.json, "
                              f"component configs, tokenizer files) in {folder} or pass config= a folder")
    return _assemble(fam, BUNDLED / fam.config, folder)


def _has_tokenizers(folder: Path, fam) -> bool:
    return all(any((folder / tok / name).is_file() for name in _VOCAB_FILES) for tok in fam.tokenizers)


def _assemble(fam, bundled: Path, folder: Path) -> Path:
    """Copy the bundled json to `folder` and add each tokenizer's vocabulary; atomic (a temp folder renamed)."""
    import json
    import os
    import shutil

    from ..configs import tokenizer_files

    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(bundled, tmp)
        for tok in fam.tokenizers:
            cls = json.loads((tmp / tok / "tokenizer_config.json").read_text()).get("tokenizer_class", "")
            if cls.startswith("CLIP"):
                for name, text in tokenizer_files().items():
                    (tmp / tok / name).write_text(text, encoding="utf-8")
            else:
                _fetch_tokenizer(cls, tmp / tok, fam)
        (tmp / ".colab_sd-bundle").write_text(fam.config + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("assembled the %s config folder at %s", fam.config, folder)
    return folder


def _fetch_tokenizer(cls: str, dest: Path, fam) -> None:
    import shutil

    from huggingface_hub import hf_hub_download

    import os

    repo, sub, names = TOKENIZERS.get(cls, (None, None, ()))
    endpoint = os.environ.get("HF_ENDPOINT") or None  # a mirror set after huggingface_hub was imported
    got = 0
    for name in names:
        try:
            shutil.copyfile(hf_hub_download(repo, f"{sub}/{name}", endpoint=endpoint), dest / name)
            got += name in _VOCAB_FILES
        except Exception:  # a repo may lack one of the candidates; offline is reported below
            log.debug("tokenizer file %s/%s/%s not fetched", repo, sub, name, exc_info=True)
    if not got:
        raise GenerationError(f"{fam.name} needs its {cls} vocabulary once (from {repo}/{sub}) and it could not be "
                              f"fetched: connect to the internet once, or pass config= a diffusers folder with "
                              f"its tokenizer")


def load_transformer(path: Path, fam, dtype, config: Path, storage: str = "", device: Optional[str] = None):
    """The denoiser from one file: GGUF (packed and memory-mapped, `gguf_mmap`; dequantized per layer in `dtype`),
    ComfyUI scaled fp8 (each weight × its scale in `dtype` first, `fp8.rescaled`: diffusers would drop the scales),
    a plain fp8 file kept fp8 when the plan says `storage="fp8"` (`fp8_vram.load`, upcast per layer) or
    safetensors.

    `device` ("cuda:0"; None = the CPU) is where each tensor goes as soon as it is cast: a plan that keeps the
    model on the GPU then never holds a 16-bit copy of it in RAM (diffusers' `from_single_file(device=…)`)."""
    import diffusers

    from ..loader import dtype_kwarg
    from . import fp8

    cls = getattr(diffusers, fam.transformer)
    kw = {"config": str(config), "subfolder": "transformer", "local_files_only": True, dtype_kwarg(): dtype}
    if device:
        kw["device"] = device
    if path.suffix.lower() == ".gguf":
        from . import gguf_mmap

        # the file's own pages, not diffusers' reader (it copies every tensor into RAM: two copies of the model)
        kw["quantization_config"] = diffusers.GGUFQuantizationConfig(compute_dtype=dtype)
        return cls.from_single_file(gguf_mmap.state_dict(path), **kw)
    elif fp8.scheme(path):
        # a plain state dict in `dtype`: the model takes these tensors as they are (no second copy), and the
        # family's converter still maps original keys as it does for a file
        return cls.from_single_file(fp8.rescaled(path, dtype), **kw)
    elif storage == "fp8":
        from . import fp8_vram

        return fp8_vram.load(cls, path, config, dtype)
    return cls.from_single_file(str(path), **kw)


def gather(fam, root: Path, config: Path, emit: Callable, job: str, *, fetch: bool = True, tokens=None,
           skip=()) -> dict:
    """role → file for every component not in `skip` (roles the model file holds itself), from the library or
    fetched (announced first: what and how big)."""
    found, absent = {}, []
    for comp in fam.components:
        if comp.role in skip:
            continue
        path = components.find(comp, root, config)
        if path is None:
            absent.append(comp)
        else:
            found[comp.role] = path
            emit(Info(f"{components.found_label(comp, path)}: {path.name} from the library", job=job))
    if absent:
        what = components.describe(absent)
        if not fetch:
            raise InputError(f"{fam.name} needs {what}; not in the library and fetching is off: download them "
                             f"into {root}/text_encoder and {root}/vae")
        emit(Info(f"fetching {what} into {root}", job=job))
        for comp in absent:
            try:
                found[comp.role] = components.fetch(comp, root, on_event=emit, tokens=tokens)
            except (InputError, GenerationError):
                raise
            except Exception as err:  # the downloader's one-line errors, said with what was being fetched
                raise GenerationError(f"{fam.name} needs {components.describe([comp])}, which could not be "
                                      f"fetched: {str(err).rstrip('.')}; try again later, or put such a file in "
                                      f"{Path(root) / comp.kind}/ yourself") from None
    return found


def load_pipeline(ref, fam, dtype, config: Path, root: Path, emit: Callable, *, plan=None, tokens=None,
                  fetch: bool = True, device: Optional[str] = None):
    """The family's text-to-image pipeline for a resolved model (see the module docstring); `device`: a GPU the
    transformer is loaded straight onto (the plan keeps it there), None to load it on the CPU."""
    import diffusers
    import torch

    from ..loader import dtype_kwarg, quiet_loading

    cls = getattr(diffusers, fam.pipeline, None)
    if cls is None:
        raise GenerationError(f"this diffusers ({diffusers.__version__}) has no {fam.pipeline}: "
                              f"pip install -U diffusers to generate with {fam.name}")
    job = ref.name
    if ref.format == "diffusers":
        with quiet_loading():
            pipe = cls.from_pretrained(str(ref.path), local_files_only=True, **{dtype_kwarg(): dtype})
    else:
        quant = _te_quantization(plan)
        inside = _inside(ref.path, fam, quant, emit, job)
        files = gather(fam, root, config, emit, job, fetch=fetch, tokens=tokens, skip=inside)
        with quiet_loading():
            parts = {"transformer": load_transformer(ref.path, fam, dtype, config, getattr(plan, "storage", ""),
                                                     device)}
        vae_dtype = torch.float32 if fam.vae_fp32 and dtype == torch.float16 else dtype
        for comp in fam.components:
            if comp.role not in inside:
                parts[comp.role] = components.load(comp, files[comp.role], config,
                                                   vae_dtype if comp.kind == "vae" else dtype,
                                                   None if comp.kind == "vae" else quant)
        with quiet_loading():
            if inside:  # diffusers builds the embedded encoders / VAE out of the file itself
                pipe = cls.from_single_file(str(ref.path), config=str(config), local_files_only=True, **parts,
                                            **{dtype_kwarg(): dtype})
            else:
                pipe = cls.from_pretrained(str(config), local_files_only=True, **parts, **{dtype_kwarg(): dtype})
    if fam.vae_fp32 and dtype == torch.float16 and pipe.vae.dtype != torch.float32:
        pipe.vae.to(torch.float32)
    if fam.fp16 == "guard" and dtype == torch.float16:
        clamp_fp16(pipe.transformer)
    vae_guard(pipe.vae, fam.name, {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, "fp32"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _inside(path: Path, fam, quant, emit: Callable, job: str) -> dict:
    """role → prefix of the components a bundle file holds that will be built from it (`bundle.held`); the
    text encoders come from the library instead when the plan quantizes them (diffusers builds a bundle's encoders
    in the compute dtype only) or when the file stores them as scaled fp8 — said in an Info either way."""
    from . import bundle

    inside, scaled = bundle.held(fam, path)
    if quant is not None and any(role.startswith("text_encoder") for role in inside):
        inside = {role: prefix for role, prefix in inside.items() if not role.startswith("text_encoder")}
        emit(Info("the memory plan quantizes the text encoders, which diffusers cannot do for encoders inside the "
                  "model file: they come from the library instead", job=job))
    if scaled:
        emit(Info(f"{', '.join(scaled)} in {path.name} are ComfyUI scaled fp8, which diffusers cannot read "
                  f"correctly: taken from the library instead", job=job))
    if inside:
        held = ", ".join(c.label.split(" (")[0] for c in fam.components if c.role in inside)
        emit(Info(f"{held}: from {path.name} itself", job=job))
    return inside


def _te_quantization(plan):
    """transformers' BitsAndBytesConfig for the plan's 8/4-bit text encoders, or None."""
    if plan is None or plan.text_encoder == "fp16":
        return None
    from transformers import BitsAndBytesConfig

    if plan.text_encoder == "8-bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    import torch

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float16)
