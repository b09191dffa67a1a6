"""From what the user typed to a model on disk with a known family: `resolve_model`, `resolve_addon`.

A model is a library name in `checkpoint/`, a `.safetensors`/`.ckpt` file, a diffusers folder or a Hugging Face
repo id (fetched into `checkpoint/<repo>/` through sources.huggingface and the byte mover, like any Hub link). The family comes from
`colab_sd.probe` (header only, before anything is loaded); families colab_sd cannot run yet are refused here
with a message that says so.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .. import probe as _probe
from ..errors import InputError, NotFoundError
from ..library import MODEL_EXTENSIONS, find_model, list_models, models_root, read_sidecar, without_extension
from ..probe.folders import read_json
from . import families as _families
from .families import fp8 as _fp8

log = logging.getLogger("colab_sd.generation")

# Every family the registry knows; the ones it marks unsupported are refused later with their sizes (memory plan).
SUPPORTED = tuple(_families.REGISTRY)
# LyCORIS algorithms diffusers' load_lora_weights has no conversion for (LoRA, LoCon and DoRA load).
UNSUPPORTED_LYCORIS = ("loha", "lokr", "oft", "boft", "ia3", "glora", "full")
FAMILY_LABEL = {f.id: f.label for f in _families.REGISTRY.values()}
NATIVE_SIZE = {f.id: f.size for f in _families.REGISTRY.values()}
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: where it is, what it is, what to call it in metadata."""

    name: str  # shown in metadata ("Model: …"): the file stem, folder name or repo id
    path: Path  # the file or folder
    format: str  # "single_file" or "diffusers"
    family: str  # "sd1", "sd2", "sdxl"
    prediction: str = "epsilon"  # "epsilon" or "v_prediction"
    zero_snr: bool = False  # trained with zero terminal SNR (v-pred SDXL fine-tunes such as NoobAI)
    reasons: tuple = ()
    meta: dict = field(default_factory=dict, compare=False)
    variant: Optional[str] = None  # the family's variant (Flux "schnell", Z-Image "base"…), see families.variants
    models_dir: Optional[str] = None  # the library it was resolved in (components are looked up there)
    plan: object = field(default=None, compare=False)  # the memory plan (transformer families), set before loading
    choice: str = field(default="", compare=False)  # how the variant was decided (shown when loading)

    @property
    def native_size(self) -> int:
        return 768 if self.family == "sd2" and self.prediction == "v_prediction" else NATIVE_SIZE[self.family]

    @property
    def key(self) -> tuple:
        """Identity for the pipeline cache: the same file, unchanged, with the same settings."""
        try:
            stat = self.path.stat()
            stamp = (stat.st_size, int(stat.st_mtime))
        except OSError:
            stamp = None
        return (str(self.path.resolve()), stamp, self.family, self.prediction, self.zero_snr, self.variant)


def _checkpoint_names(root: Path) -> str:
    names = [e.name for e in list_models(root, ["checkpoint"])]
    if not names:
        return f"there are no checkpoints in {root / 'checkpoint'} yet; download one first"
    shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
    return f"checkpoints in {root / 'checkpoint'}: {shown}"


def locate(model, models_dir=None, *, hf_token: Optional[str] = None) -> Path:
    """The file or folder for a model reference, downloading a Hub repo when that is what it is."""
    text = str(model).strip()
    root = models_root(models_dir)
    path = Path(text).expanduser()
    if path.exists():
        return path
    entry = find_model(root, "checkpoint", text)
    if entry is not None:
        return entry.path
    looks_like_path = text.lower().endswith(MODEL_EXTENSIONS) or os.sep in text.strip("/") and text.count("/") > 1
    if _REPO_ID.match(text) and not looks_like_path:
        return _hub_repo(text, root, hf_token)
    raise NotFoundError(f"model {text!r} not found: {_checkpoint_names(root)}")


def _hub_repo(repo_id: str, root: Path, token: Optional[str]) -> Path:
    """A diffusers repo from the Hub as `checkpoint/<repo>/`: the one Hugging Face path (sources.huggingface picks
    the files, the byte mover fetches and verifies them, with a sidecar and live progress). A repo already in the
    library is used as it is (also offline)."""
    from ..api import download
    from ..errors import AuthError
    from ..events import TqdmBar
    from ..tokens import TokenStore

    have = root / "checkpoint" / repo_id.split("/")[-1]
    if (have / "model_index.json").is_file() and (read_sidecar(have).get("huggingface") or {}).get("repo") == repo_id:
        return have
    try:
        folder = download(repo_id, kind="checkpoint", models_dir=root, source="huggingface",
                          tokens=TokenStore(huggingface=token), on_event=TqdmBar(leave=False))
    except AuthError as err:
        if "gated" not in str(err):
            raise
        raise NotFoundError(f"{repo_id} is gated: accept its licence on huggingface.co/{repo_id} and set HF_TOKEN") from None
    except NotFoundError:
        raise NotFoundError(f"{repo_id} is not a Hugging Face repo you can see (a private repo needs HF_TOKEN), "
                            f"nor a checkpoint in the library or a path") from None
    if not (Path(folder) / "model_index.json").is_file():
        raise InputError(f"{repo_id} is not a diffusers pipeline repo (no model_index.json): "
                         f"download its .safetensors file into checkpoint/ and use that")
    return Path(folder)


def _from_hub(model, path: Path) -> bool:
    """True when `model` named a Hub repo (its metadata then says the repo id, not the folder name)."""
    return (read_sidecar(path).get("huggingface") or {}).get("repo") == str(model).strip() if path.is_dir() else False


def resolve_model(model, models_dir=None, *, prediction: Optional[str] = None, hf_token: Optional[str] = None) -> ModelRef:
    """Locate and identify a model; refuse families and variants colab_sd cannot generate with yet."""
    path = locate(model, models_dir, hf_token=hf_token)
    found = _probe.inspect(path)
    label = path.name
    # The probe walks pickles without loading them and warns when one would import more than tensors need.
    unsafe = [str(r) for r in found.reasons if str(r).startswith("warning:") and "pickle" in str(r)
              and (" import " in str(r) or " calls " in str(r))]
    if unsafe:
        named = re.search(r"(?:import|calls) (.+?)(?:, which| when|;|$)", unsafe[0])
        raise InputError(f"{label} would run code when loaded (it imports {named.group(1) if named else 'code'}): "
                         f"colab_sd does not load it; get a .safetensors version of this model")
    damaged = [str(r) for r in found.reasons if " is truncated" in str(r) or "corrupt" in str(r)]
    if found.kind is None and damaged:  # the probe's own line says what is wrong and what to do
        raise InputError(damaged[0])
    if found.format in ("safetensors", "gguf") and path.is_file() and path.suffix.lower() != f".{found.format}":
        # diffusers picks its reader by the extension: a renamed safetensors file would go to torch.load
        raise InputError(f"{label} is a {found.format} file with a {path.suffix or 'missing'} extension: rename "
                         f"it to {path.stem}.{found.format}")
    if found.kind not in ("checkpoint", None) or (found.kind is None and found.family is None):
        what = found.summary
        where = f"it belongs in {found.kind}/ (move it there); " if found.kind and path.is_file() else ""
        raise InputError(f"{label} is not a checkpoint (it looks like {what}): {where}choose a model from checkpoint/")
    family = found.family
    if family not in SUPPORTED:
        named = _probe.FAMILY_NAMES.get(family, family) if family else "an unknown model family"
        raise InputError(f"{label} is {named}; colab_sd generates with SD1.x, SD2.x, SDXL (Pony, Illustrious…), "
                         f"Z-Image, Flux.1, Chroma, SD3.x and Flux.2 Klein models for now")
    if _families.get(family).is_transformer:
        return _transformer_ref(model, path, found, label)
    if found.variant in ("instruct-pix2pix", "playground-v2.5", "edm-v-prediction"):
        raise InputError(f"{label} is an {FAMILY_LABEL[family]} {found.variant} model; colab_sd generates with "
                         f"plain text-to-image checkpoints for now: choose another model")
    meta = read_sidecar(path) if path.exists() else {}
    pred, zero_snr, why = _prediction(family, found, meta, path, prediction)
    stem = without_extension(path.name)
    if "huggingface" in path.parts or "snapshots" in path.parts or _from_hub(model, path):
        stem = str(model).strip()
    return ModelRef(name=stem, path=path, format="diffusers" if path.is_dir() else "single_file", family=family,
                    prediction=pred, zero_snr=zero_snr, reasons=tuple(found.reasons) + (why,), meta=meta,
                    variant="inpaint" if found.variant == "inpaint" else None)  # 9-channel UNet: passes.py


def _transformer_ref(model, path: Path, found, label: str) -> ModelRef:
    """A transformer-family model: its variant decided (shapes, then sidecar baseModel, metadata, file name)."""
    nf4 = next((str(r) for r in found.reasons if "NF4" in str(r)), None)
    if nf4:
        raise InputError(f"{label} is a prequantized {nf4.split(':')[0]}; use a GGUF (Q4_K_M / Q5_K_M) of the "
                         f"same model instead: put it in checkpoint/")
    # ComfyUI scaled fp8: rescaled while loading (families.fp8); a format it cannot dequantize is refused here
    scaled = _fp8.scheme(path) if path.is_file() else None
    rescale = (f"{scaled}: each weight × its scale while loading, in the compute dtype",) if scaled else ()
    meta = read_sidecar(path) if path.exists() else {}
    fam = _families.get(found.family)
    variant, why = _families.decide_variant(fam, found.variant, path.name, meta, found.metadata)
    chosen = fam.for_variant(variant)
    refused = _families.refusal(chosen, label)
    if refused:
        raise InputError(refused)
    name = str(model).strip() if "huggingface" in path.parts or "snapshots" in path.parts or _from_hub(model, path) \
        else _stem(path)
    return ModelRef(name=name, path=path, format="diffusers" if path.is_dir() else "single_file", family=found.family,
                    reasons=tuple(found.reasons) + rescale + ((why,) if why else ()), meta=meta, variant=variant,
                    choice="; ".join(filter(None, (why, _sidecar_conflict(meta, found.family, fam.name)))))


def _sidecar_conflict(meta: dict, family: str, name: str) -> str:
    """A note when the sidecar's CivitAI baseModel names another family than the file's header (a mislabelled
    upload, or a sidecar copied beside the wrong file): the header decides, and the user is told."""
    from ..civitai.resources import family_of

    base = str(meta.get("base_model") or meta.get("baseModel") or "").strip()
    said = family_of(base)
    if not base or said in (None, family) or (said == "flux2" and family == "flux2"):
        return ""
    return f"its sidecar says baseModel {base!r}, but the file's weights are {name}: read as {name}"


def _stem(path: Path) -> str:
    return without_extension(path.name)


def _prediction(family: str, found, meta: dict, path: Path, override: Optional[str]) -> tuple[str, bool, str]:
    """Epsilon or v-prediction, and zero terminal SNR, in this order of trust:

    the request's `prediction`, the sidecar's `prediction_type`, the probe (a `v_pred` key, training metadata, or a
    diffusers scheduler config), then per family: SD2 defaults to v-prediction (SD2.0/2.1 768 and most SD2
    fine-tunes; diffusers assumes the same) unless the name says "512"/"base"; SD1 and SDXL default to epsilon.
    """
    zero_snr = "ztsnr" in (found.metadata or {}) or bool(meta.get("zero_snr"))
    if override:
        return override, zero_snr, f"prediction type {override} from the request"
    side = str(meta.get("prediction_type") or "").lower()
    if side in ("epsilon", "v_prediction", "v", "v-prediction"):
        pred = "epsilon" if side == "epsilon" else "v_prediction"
        return pred, zero_snr, f"prediction type {pred} from the sidecar"
    if found.variant == "v-prediction":
        if found.format == "diffusers":  # its scheduler config says both
            zero_snr = zero_snr or bool(read_json(path / "scheduler" / "scheduler_config.json")
                                        .get("rescale_betas_zero_snr"))
            return "v_prediction", zero_snr, "v-prediction from the folder's scheduler config"
        # v-pred SDXL single files (NoobAI and kin) are trained with zero terminal SNR.
        return "v_prediction", zero_snr or family == "sdxl", "v-prediction from the file (probe)"
    if family == "sd2" and found.format != "diffusers":
        lowered = path.name.lower()
        if "512" in lowered or "base" in lowered:
            return "epsilon", zero_snr, "SD2 512/base model by its name → epsilon"
        return "v_prediction", zero_snr, "SD2 checkpoint → v-prediction (the SD2 768 default; override with prediction=)"
    return "epsilon", zero_snr, "epsilon prediction (the family default)"


# ---------------------------------------------------------------------------------------------- add-ons


@dataclass(frozen=True)
class Addon:
    kind: str  # "lora", "vae", "embedding"
    name: str  # the stem: what prompts call it
    path: Path
    family: Optional[str]
    meta: dict = field(default_factory=dict, compare=False)
    variant: Optional[str] = None  # for a LoRA: a LyCORIS algorithm other than plain LoRA/LoCon ("loha", "lokr", …)

    @property
    def trigger_words(self) -> list[str]:
        return list(self.meta.get("trigger_words") or [])


def resolve_addon(kind: str, name: str, models_dir=None) -> Addon:
    """A LoRA / VAE / embedding by library name (with or without extension) or path."""
    root = models_root(models_dir)
    text = str(name).strip()
    path = Path(text).expanduser()
    if not path.exists():
        entry = find_model(root, kind, text)
        if entry is None:
            names = [e.stem for e in list_models(root, [kind])]
            listing = ", ".join(names[:15]) + (" …" if len(names) > 15 else "") if names else "none yet"
            raise NotFoundError(f"{kind} {text!r} not found in {root / kind} (available: {listing})")
        path = entry.path
    stem = without_extension(path.name)
    family = variant = None
    if path.is_file():
        found = _probe.inspect(path)
        family, variant = found.family, found.variant
        if found.kind not in (kind, None, "other"):
            raise InputError(f"{path.name} is not a {kind} (it looks like {found.summary}): put it in {found.kind}/")
        if kind == "lora" and variant in UNSUPPORTED_LYCORIS:
            raise InputError(f"LoRA {stem} is a LyCORIS {variant.upper()}, which diffusers cannot apply yet: "
                             f"plain LoRA and LoCon files work; look for a LoRA version of it")
    return Addon(kind, stem, path, family, read_sidecar(path), variant)


def trigger_words(lora: str, models_dir=None) -> list[str]:
    """The trigger words recorded in a LoRA's sidecar (CivitAI's "trained words"), for the UI to offer."""
    return resolve_addon("lora", lora, models_dir).trigger_words


def embedding_names(models_dir=None) -> dict[str, Path]:
    """Embedding stem → path, for every file in `embedding/` (what a prompt may mention)."""
    root = models_root(models_dir)
    out = {}
    for entry in list_models(root, ["embedding"]):
        out.setdefault(entry.stem, entry.path)
    return out
