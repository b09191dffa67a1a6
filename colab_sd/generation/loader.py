"""Loading diffusers pipelines and VAEs: the family's class, the right dtype argument, local configs only."""
from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path
from typing import Optional

from ..errors import GenerationError, InputError
from . import configs
from .models import FAMILY_LABEL, ModelRef

log = logging.getLogger("colab_sd.generation")


def dtype_kwarg(diffusers_version: Optional[str] = None) -> str:
    """The name of from_pretrained's dtype argument: `dtype` from diffusers 0.40 on, `torch_dtype` before."""
    from packaging.version import Version

    if diffusers_version is None:
        import diffusers

        diffusers_version = diffusers.__version__
    return "dtype" if Version(Version(diffusers_version).base_version) >= Version("0.40.0") else "torch_dtype"


class _NoTorchvisionNotice(logging.Filter):
    """transformers warns, once per class, that an image processor "requires torchvision (not installed)" and
    falls back to its PIL version. colab_sd uses no image processor (no safety checker), so on a machine
    without torchvision the two notices (CLIP, Siglip) printed at every `import diffusers` say nothing useful."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed)" not in record.getMessage()


def hush_torchvision_notice() -> None:
    """Install the filter above on the transformers logger that emits the notice (idempotent, imports nothing)."""
    logger = logging.getLogger("transformers.utils.import_utils")
    if not any(isinstance(f, _NoTorchvisionNotice) for f in logger.filters):
        logger.addFilter(_NoTorchvisionNotice())


def is_oom(err: BaseException) -> bool:
    """CUDA or host out-of-memory, whichever way torch reports it."""
    import torch

    if isinstance(err, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def pick_device(requested: Optional[str] = None) -> str:
    import torch

    if requested:
        if str(requested).startswith("cuda") and not torch.cuda.is_available():
            raise InputError("device cuda was asked for but this machine has no CUDA GPU: use device=cpu "
                             "(in Colab: Runtime → Change runtime type → GPU)")
        return str(requested)
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(name: Optional[str], device: str):
    """fp16 on CUDA (T4s have no fast bf16), fp32 on the CPU (fp16 matmuls are slow or missing there)."""
    import torch

    table = {"fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
             "fp32": torch.float32, "float32": torch.float32}
    if name:
        return table[name]
    return torch.float16 if device.startswith("cuda") else torch.float32


def pipeline_classes(family: str, variant: Optional[str] = None):
    """(text-to-image class, image-to-image class or None) for a family, from the families registry."""
    import diffusers

    from .families import lookup

    fam = lookup(family, variant)
    return getattr(diffusers, fam.pipeline), (getattr(diffusers, fam.img2img) if fam.img2img else None)


@contextlib.contextmanager
def quiet_loading():
    """No loading bars or cast warnings from diffusers/transformers in the notebook while we load; restored after."""
    from diffusers.utils import logging as dlogging
    from transformers.utils import logging as tlogging

    bars = (dlogging.is_progress_bar_enabled(), tlogging.is_progress_bar_enabled())
    levels = (dlogging.get_verbosity(), tlogging.get_verbosity())
    dlogging.disable_progress_bar()
    tlogging.disable_progress_bar()
    dlogging.set_verbosity_error()
    tlogging.set_verbosity_error()
    try:
        yield
    finally:
        dlogging.set_verbosity(levels[0])
        tlogging.set_verbosity(levels[1])
        if bars[0]:
            dlogging.enable_progress_bar()
        if bars[1]:
            tlogging.enable_progress_bar()


def single_file_config(ref: ModelRef, explicit: Optional[str] = None) -> str:
    """The config folder (or repo id) for a single-file model: the request's, the sidecar's, else the bundled one."""
    chosen = explicit or ref.meta.get("config")
    if chosen:
        if os.path.isdir(os.path.expanduser(str(chosen))):
            return os.path.expanduser(str(chosen))
        return str(chosen)  # a repo id: diffusers fetches its configs (online) once
    # The tokenizer files come from a public repo: no token is asked for (nor a Colab secret prompt shown).
    return str(configs.config_folder(ref.family))


def _variant(folder: Path) -> Optional[str]:
    unet = folder / "unet"
    has_plain = any(unet.glob("diffusion_pytorch_model.safetensors")) or any(unet.glob("diffusion_pytorch_model-*.safetensors"))
    if not has_plain and any(unet.glob("*.fp16.safetensors")):
        return "fp16"
    return None


def load_pipeline(ref: ModelRef, dtype, config: Optional[str] = None, emit=None, device: Optional[str] = None):
    """(pipeline, config source folder) for a resolved model; nothing is fetched for local files (a transformer
    family's missing text encoders / VAE are, announced through `emit`: see families.load). `device`: where the
    model will run; a transformer whose memory plan keeps it all on that GPU is loaded straight onto it."""
    from .families import lookup

    fam = lookup(ref.family, ref.variant)
    if fam.is_transformer:
        from ..library import models_root
        from .families.load import config_folder, load_pipeline as load_family

        # a diffusers folder (local or a Hub snapshot) carries its own configs and tokenizers
        folder = Path(ref.path) if ref.format == "diffusers" else config_folder(fam, config)
        pipe = load_family(ref, fam, dtype, folder, models_root(ref.models_dir), emit or (lambda event: None),
                           plan=ref.plan, device=load_device(ref.plan, device))
        return pipe, folder
    cls, _ = pipeline_classes(ref.family)
    if ref.variant == "inpaint":  # a 9-channel UNet: the family's inpaint pipeline (generation/inpaint.py)
        from .inpaint import inpaint_class, nine_channel_unet

        cls = inpaint_class(ref.family)
    kw = {dtype_kwarg(): dtype}
    extra = {"safety_checker": None, "requires_safety_checker": False} if ref.family != "sdxl" else {}
    try:
        with quiet_loading():
            if ref.format == "single_file":
                source = single_file_config(ref, config)
                local = os.path.isdir(source)
                if ref.variant == "inpaint":
                    extra["unet"] = nine_channel_unet(ref.path, source, local, kw)
                pipe = cls.from_single_file(str(ref.path), config=source, local_files_only=local, **kw, **extra)
            else:
                source = str(ref.path)
                variant = _variant(ref.path)
                pipe = cls.from_pretrained(source, local_files_only=True, variant=variant, **kw, **extra)
    except (GenerationError, InputError):
        raise
    except Exception as err:
        if is_oom(err):
            raise
        raise GenerationError(load_failure(ref, err, config)) from err
    _set_prediction(pipe, ref)
    pipe.set_progress_bar_config(disable=True)
    return pipe, Path(source) if os.path.isdir(source) else None


def load_device(plan, device: Optional[str]) -> Optional[str]:
    """Where a transformer family's denoiser is loaded: straight onto the GPU when its memory plan keeps everything
    there (no 16-bit copy in RAM on the way: the plan counts ~0.5 GB of RAM for such a load), else the CPU (None),
    from where model / sequential offload or `.to()` places it."""
    on_gpu = plan is not None and plan.placement == "gpu" and str(device or "").startswith("cuda")
    return device if on_gpu else None


_SHAPE = re.compile(r"(\S+) expected shape (torch\.Size\(\[[\d, ]*\]\)), but got (torch\.Size\(\[[\d, ]*\]\))")
_MISSING = re.compile(r"Failed to load (\w+)\. Weights for this component appear to be missing")


def load_failure(ref: ModelRef, err: BaseException, config: Optional[str] = None) -> str:
    """One line with the real cause of a failed load and what to do (CLI words, the API's in brackets)."""
    label = f"{ref.name} as an {FAMILY_LABEL.get(ref.family, ref.family)} model"
    text = " ".join(str(err).split())
    shape = _SHAPE.search(text)
    if shape:
        key, expected, got = shape.groups()
        size = lambda s: s.removeprefix("torch.Size(").removesuffix(")")  # noqa: E731
        where = f"the config in {config}" if config else f"the {'bundled' if ref.format == 'single_file' else 'folder'} config"
        return (f"could not load {label}: its weights do not fit {where} ({key} is {size(got)}, the config says "
                f"{size(expected)}), so it is a pruned or custom-size model: pass --config a diffusers folder made "
                f"for it (config= in Python)")
    missing = _MISSING.search(text)
    if missing:
        return (f"could not load {label}: the file has no {missing.group(1)} weights (a UNet-only or partial "
                f"checkpoint): use a full checkpoint, or a diffusers folder")
    if isinstance(err, (EOFError,)) or "incomplete" in text.lower() or "unexpected end" in text.lower():
        return f"could not load {label}: the file is cut short ({text[:160]}): download it again"
    first = text[:240] or type(err).__name__
    return f"could not load {label}: {type(err).__name__}: {first}"


def _set_prediction(pipe, ref: ModelRef) -> None:
    config = dict(pipe.scheduler.config)
    changes = {}
    if config.get("prediction_type") != ref.prediction:
        changes["prediction_type"] = ref.prediction
    if ref.zero_snr and not config.get("rescale_betas_zero_snr"):
        changes.update(rescale_betas_zero_snr=True, timestep_spacing="trailing")
    if changes:
        pipe.scheduler = pipe.scheduler.__class__.from_config(config, **changes)


def _diffusers_layout(path: Path) -> bool:
    from safetensors import safe_open

    if path.suffix != ".safetensors":
        return False
    with safe_open(str(path), framework="pt") as fh:
        return any(".down_blocks." in k or ".mid_block." in k for k in fh.keys())


def load_vae(path: Path, config_source: Optional[Path], family: str, dtype):
    """A VAE from a file (original or diffusers layout) or a folder, built with the model family's VAE config,
    so an SDXL VAE gets SDXL's scaling factor even though its weights look like any other VAE."""
    from diffusers import AutoencoderKL

    source = config_source if config_source and (config_source / "vae" / "config.json").is_file() \
        else configs.BUNDLED / family
    try:
        with quiet_loading():
            if path.is_dir():
                folder = path / "vae" if (path / "vae" / "config.json").is_file() else path
                return AutoencoderKL.from_pretrained(str(folder), local_files_only=True, **{dtype_kwarg(): dtype})
            if _diffusers_layout(path):
                from safetensors.torch import load_file

                vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(source), subfolder="vae"))
                vae.load_state_dict(load_file(str(path)))
                return vae.to(dtype)
            return AutoencoderKL.from_single_file(str(path), config=str(source), subfolder="vae",
                                                  local_files_only=True, **{dtype_kwarg(): dtype})
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"VAE {path.name} could not be loaded ({first[:200]}): is it a VAE for this model?") from err
