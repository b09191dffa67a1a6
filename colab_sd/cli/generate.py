"""`colab-sd generate`: options, and a handler that imports torch/diffusers only when it runs."""
from __future__ import annotations

import argparse
import sys

from ..sampler_table import DEFAULT_SAMPLER, DEFAULT_SCHEDULE, SAMPLERS, SCHEDULES  # light: not `generation`
from . import from_image, second_pass
from .common import EXIT_USAGE, fail


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("generate", help="generate images with a checkpoint from the library",
                       description="Generate images (txt2img, or img2img with --init) and save them as PNGs with "
                                   "A1111 metadata; prints the saved paths.")
    p.add_argument("--model", "-m", help="checkpoint name in DIR/checkpoint, a .safetensors/.ckpt file, a diffusers "
                                         "folder or a HF repo id (required unless --from gives it)")
    p.add_argument("--prompt", "-p", help="the prompt; <lora:name:0.8> tags apply LoRAs (required unless --from)")
    from_image.add_argument(p)
    p.add_argument("--negative", "-n", default="", help="negative prompt")
    p.add_argument("--steps", type=int, default=None, help="default: the model family's (25 SD, 9 Z-Image Turbo, "
                   "28 Flux dev, 4 schnell)")
    p.add_argument("--cfg", type=float, default=None, help="CFG scale / guidance (default: the family's, 7 for SD)")
    p.add_argument("--sampler", default=DEFAULT_SAMPLER, help=f"one of: {', '.join(SAMPLERS)} (default {DEFAULT_SAMPLER})")
    p.add_argument("--schedule", default=DEFAULT_SCHEDULE, help=f"one of: {', '.join(SCHEDULES)}")
    p.add_argument("--seed", type=int, default=-1, help="-1 picks one (printed)")
    p.add_argument("--width", type=int, default=None, help="default: the model's native size (512/768/1024)")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--batch", type=int, default=1, help="images per run (batch size)")
    p.add_argument("--count", type=int, default=1, help="runs (batch count)")
    p.add_argument("--clip-skip", type=int, default=1)
    p.add_argument("--lora", action="append", default=[], metavar="NAME:WEIGHT", help="apply a LoRA (repeatable)")
    p.add_argument("--embedding", action="append", default=[], metavar="NAME", help="load an embedding by name (repeatable)")
    p.add_argument("--vae", help="VAE name in DIR/vae, or a file")
    p.add_argument("--init", "--init-image", dest="init", help="init image for img2img")
    p.add_argument("--strength", "--denoising-strength", dest="strength", type=float, default=0.75,
                   help="img2img denoising strength (default 0.75)")
    p.add_argument("--prediction", choices=("epsilon", "v_prediction"), help="override the detected prediction type")
    p.add_argument("--config", help="diffusers config folder or repo id for a single-file model (default: bundled)")
    p.add_argument("--device", help="cuda or cpu (default: cuda when there is one)")
    p.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), help="default: fp16 on CUDA, fp32 on CPU")
    p.add_argument("--low-vram", action="store_true", help="model CPU offload and VAE tiling (small GPUs)")
    p.add_argument("--placement", choices=("gpu", "model_offload", "sequential_offload"),
                   help="newer families (Flux, Z-Image…): force the memory plan's placement (default: the plan's)")
    p.add_argument("--text-encoders", dest="text_encoder_precision", choices=("fp16", "8-bit", "4-bit"),
                   help="newer families: force the text encoders' precision (8/4-bit need bitsandbytes and CUDA)")
    p.add_argument("--dir", dest="models_dir", help="models root (default: $COLAB_SD_HOME, /content/models in Colab, ./models)")
    p.add_argument("--out", dest="outputs_dir", help="outputs folder (default: $COLAB_SD_OUTPUTS, /content/outputs in Colab, ./outputs)")
    p.add_argument("--json", action="store_true", help="print one JSON event per line on stdout")
    second_pass.add_arguments(p)  # --hires-*, --mask, --mask-blur, --inpaint-area, --masked-content, --resize-mode
    from_image.mark_defaults(p)  # keep last: it marks every default above so that --from knows what was given
    p.set_defaults(handler=run)
    return p


class _StepBar:
    """A tqdm bar per image driven by StepProgress events; info lines above it."""

    def __init__(self, stream):
        from tqdm.auto import tqdm

        self._tqdm, self._stream, self._bar, self._image = tqdm, stream, None, None

    def __call__(self, event) -> None:
        from ..events import Completed, Info, StepProgress

        if isinstance(event, StepProgress):
            if self._bar is None or self._image != event.image:
                self.close()
                self._bar = self._tqdm(total=event.total, desc=f"image {event.image + 1}", unit="step",
                                       file=self._stream, leave=False, dynamic_ncols=True)
                self._image = event.image
            self._bar.n = event.step
            self._bar.refresh()
        elif isinstance(event, Info):
            self._tqdm.write(event.message, file=self._stream)
        elif isinstance(event, Completed):
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def run(args) -> int:
    from ..events import JsonLines
    from ..generation import generate

    listener = JsonLines(sys.stdout) if args.json else _StepBar(sys.stderr)
    fields = dict(model=args.model, prompt=args.prompt, negative_prompt=args.negative, steps=args.steps,
                  cfg=args.cfg, sampler=args.sampler, schedule=args.schedule, seed=args.seed,
                  width=args.width, height=args.height, batch_size=args.batch, batch_count=args.count,
                  clip_skip=args.clip_skip, loras=args.lora, embeddings=args.embedding, vae=args.vae,
                  init_image=args.init, strength=args.strength, prediction=args.prediction,
                  config=args.config, device=args.device, dtype=args.dtype, low_vram=args.low_vram,
                  placement=args.placement, text_encoder_precision=args.text_encoder_precision,
                  models_dir=args.models_dir, outputs_dir=args.outputs_dir, **second_pass.fields(args))
    if args.from_image:
        fields = from_image.apply(args.from_image, fields, args.models_dir, listener)
    elif not args.model or args.prompt is None:
        fail("generate needs --model and --prompt, or --from IMAGE to take them from an image")
        return EXIT_USAGE
    _preflight(fields)
    try:
        result = generate(**fields, on_event=listener)
    finally:
        if isinstance(listener, _StepBar):
            listener.close()
    if not args.json:
        for path in result.paths:
            print(path, flush=True)
        print(f"seed {result.seed}: {len(result.paths)} image(s) with {result.model}", file=sys.stderr, flush=True)
    return 0 if result.paths or not result.cancelled else 1


def _preflight(fields: dict) -> None:
    """What would fail only after the model loaded and the images were made, checked first and said in CLI words."""
    import os

    from ..errors import InputError

    out = fields.get("outputs_dir")
    if out and os.path.exists(os.path.expanduser(out)) and not os.path.isdir(os.path.expanduser(out)):
        raise InputError(f"--out {out} is a file: give a folder (the images are saved inside it)")
    device = str(fields.get("device") or "")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: this machine has no CUDA GPU; use --device cpu, or leave --device "
                             f"out (in Colab: Runtime → Change runtime type → GPU)")
