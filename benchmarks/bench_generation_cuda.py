"""Full-size SD1.5 and SDXL on CUDA: colab_sd.generate against the same diffusers pipeline called directly.

    python benchmarks/bench_generation_cuda.py                         # 20 steps, 3 repeats, 512² and 1024²
    python benchmarks/bench_generation_cuda.py --steps 10 --repeats 2 --archs sdxl --results /tmp/RESULTS.md

No download: each architecture is built from colab_sd's bundled configs (the real SD1.5 / SDXL shapes) with
random fp16 weights directly on the GPU, with a small local CLIP tokenizer (the prompt is still padded to 77
tokens, as with the real one), saved as an original-layout single file like a CivitAI checkpoint (or, with
--format diffusers, a diffusers folder) and loaded by colab_sd like any model. Both sides then
run the very same pipeline object, scheduler (DPM++ 2M Karras), prompt, size, steps and seed; each call is timed
end to end (text encoding, denoising, VAE decode; colab_sd's side also writes the PNG), with
torch.cuda.synchronize() around it, calls alternating. it/s = steps / median call time. Random weights make
black or NaN images; that does not change the work done.

Needs only the project's venv (torch with CUDA, diffusers, transformers) and a CUDA GPU; without one it stops at
once with a message. Under 4 minutes on an H100 including building the models.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

from harness import alternate, options, publish  # benchmarks/ is on sys.path when a script runs

BEGIN, END = "<!-- generation-cuda:begin -->", "<!-- generation-cuda:end -->"
ARCHS = {"sd15": "sd1", "sdxl": "sdxl"}


def need_cuda():
    """The torch module, or exit 2 at once with what is missing."""
    try:
        import torch
    except ImportError:
        print("bench_generation_cuda: torch is not installed; use the project venv (pip install -e '.[generation]')",
              file=sys.stderr)
        sys.exit(2)
    if not torch.cuda.is_available():
        build = f"CUDA build {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        print(f"bench_generation_cuda: no CUDA GPU available (torch {torch.__version__}, {build}); run it on a "
              f"machine with an NVIDIA GPU and a CUDA build of torch", file=sys.stderr)
        sys.exit(2)
    return torch


def build_model(arch: str, folder: Path, torch, device: str = "cuda", fmt: str = "single") -> Path:
    """The real architecture with random fp16 weights and a small local tokenizer, saved as an original-layout
    single file (`fmt="single"`, like a CivitAI checkpoint; `folder` then holds its config folder) or as a
    diffusers folder. Returns what to pass as model=."""
    import diffusers
    import transformers

    import tiny_models
    from colab_sd.generation import configs

    family = ARCHS[arch]
    shutil.copytree(configs.BUNDLED / family, folder)
    for tok in folder.glob("tokenizer*"):
        for name, text in tiny_models.tokenizer_files().items():
            (tok / name).write_text(text, encoding="utf-8")
    index = configs.model_index(folder)
    started = time.perf_counter()
    modules = {}
    with torch.device(device):
        for name, value in index.items():
            if name.startswith("_") or not isinstance(value, list) or not isinstance(value[0], str):
                continue
            library, cls_name = value
            if name.startswith("tokenizer"):
                modules[name] = transformers.CLIPTokenizer.from_pretrained(folder / name)
            elif name == "scheduler":
                modules[name] = getattr(diffusers, cls_name).from_pretrained(folder, subfolder="scheduler")
            elif library == "diffusers":
                cls = getattr(diffusers, cls_name)
                modules[name] = cls.from_config(cls.load_config(folder / name)).half()
            else:
                cls = getattr(transformers, cls_name)
                config = transformers.CLIPTextConfig.from_pretrained(folder / name)
                modules[name] = cls(config).half()
    _sync(torch)
    built = time.perf_counter() - started
    pipe_cls = getattr(diffusers, index["_class_name"])
    extra = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False} if family == "sd1" else {}
    from colab_sd.generation.loader import quiet_loading

    pipe = pipe_cls(**modules, **extra)
    params = sum(p.numel() for m in pipe.components.values() if isinstance(m, torch.nn.Module) for p in m.parameters())
    if fmt == "single":
        from safetensors.torch import save_file

        # What colab_sd finds in its config cache for this family: the bundled configs + the local tokenizer.
        target = folder.parent / f"{arch}.safetensors"
        state = {k: v.detach().to("cpu", torch.float16).contiguous()
                 for k, v in tiny_models.to_original(pipe, family).items()}
        save_file(state, str(target))
        del state
    else:
        target = folder
        with quiet_loading():
            pipe.save_pretrained(folder, safe_serialization=True)
    del pipe, modules
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    print(f"{arch}: built {params / 1e9:.2f}B parameters in {built:.1f}s, saved as "
          f"{'one original-layout file' if fmt == 'single' else 'a diffusers folder'} in "
          f"{time.perf_counter() - started - built:.1f}s", file=sys.stderr, flush=True)
    return target


def _sync(torch) -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def bench_arch(arch: str, model: Path, sizes: list[int], args, out_dir: Path, torch) -> list[dict]:
    import colab_sd
    from colab_sd.generation import load_count
    from colab_sd.generation.cache import CACHE

    rows = []
    for size in sizes:
        fields = dict(model=str(model), prompt="a photo of a cat, high quality", negative_prompt="blurry",
                      steps=args.steps, width=size, height=size, seed=1234, sampler="DPM++ 2M", schedule="Karras",
                      device=args.device, outputs_dir=str(out_dir))
        loads = load_count()
        started = time.perf_counter()
        colab_sd.generate(**fields)  # loads on the first size, warms this size
        first = time.perf_counter() - started
        loaded = load_count() - loads
        pipe = CACHE.entry.pipe

        def direct():
            generator = [torch.Generator("cpu").manual_seed(1234)]
            with torch.inference_mode():
                return pipe(prompt=fields["prompt"], negative_prompt=fields["negative_prompt"],
                            num_inference_steps=args.steps, guidance_scale=7.0, width=size, height=size,
                            generator=generator, output_type="pil").images

        def ours():
            return colab_sd.generate(**fields).images

        def ours_unsaved():  # the same call without writing the PNG: colab_sd's own overhead alone
            return colab_sd.generate(**fields, save=False).images

        direct()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        times = alternate((ours, direct, ours_unsaved), args.repeats, sync=lambda: _sync(torch))
        ours_s, direct_s, unsaved_s = (statistics.median(t) for t in times)
        rows.append({"arch": arch, "size": size, "ours_s": ours_s, "direct_s": direct_s, "unsaved_s": unsaved_s,
                     "ours_its": args.steps / ours_s, "direct_its": args.steps / direct_s,
                     "first_s": first, "loaded": loaded, "later_loads": load_count() - loads - loaded,
                     "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0})
        r = rows[-1]
        print(f"{arch} {size}²: diffusers {r['direct_its']:.2f} it/s, colab_sd {r['ours_its']:.2f} it/s",
              file=sys.stderr, flush=True)
    return rows


def main(argv=None) -> int:
    p = options(__doc__.split("\n\n")[0], steps=20, repeats=3, threads=False)
    p.add_argument("--sizes", default="512,1024", help="image sides, comma-separated (default 512,1024)")
    p.add_argument("--archs", default="sd15,sdxl", help="sd15, sdxl or both (default both)")
    p.add_argument("--format", choices=("single", "diffusers"), default="single",
                   help="save the models as original-layout single files, as CivitAI ships them and loaded through "
                        "colab_sd's config cache (default), or as diffusers folders")
    p.add_argument("--workdir", help="where the model folders go (default: a temp folder, removed at the end)")
    p.add_argument("--device", default="cuda", help=argparse.SUPPRESS)  # "cpu": check the script itself, slowly
    args = p.parse_args(argv)
    if args.device == "cpu":
        import torch
    else:
        torch = need_cuda()
    warnings.filterwarnings("ignore")  # random weights: NaN casts in image conversion, expected here

    import diffusers

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    unknown = [a for a in archs if a not in ARCHS]
    if unknown:
        print(f"bench_generation_cuda: unknown arch {unknown[0]!r}: use sd15 and/or sdxl", file=sys.stderr)
        return 2
    started = time.perf_counter()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="colab_sd_cuda_bench_"))
    rows = []
    try:
        os.environ["COLAB_SD_CONFIGS"] = str(work / "configs")  # single files: family → this run's config folder
        for arch in archs:
            folder = work / "configs" / ARCHS[arch]
            model = build_model(arch, folder, torch, args.device, args.format)
            rows += bench_arch(arch, model, sizes, args, work / "outputs", torch)
            from colab_sd.generation import release

            release()
            if model.is_file():
                model.unlink()
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    card = torch.cuda.get_device_name(0) if args.device != "cpu" else "CPU (script check only)"
    lines = ["### Generation on CUDA: colab_sd.generate vs the same diffusers pipeline", "",
             f"{card}, torch {torch.__version__} (CUDA {torch.version.cuda}), diffusers {diffusers.__version__}; "
             f"real SD1.5 / SDXL architectures with random fp16 weights, loaded by colab_sd from "
             f"{'original-layout single files' if args.format == 'single' else 'diffusers folders'}, "
             f"DPM++ 2M Karras, {args.steps} steps, "
             f"CFG 7, batch 1, median of {args.repeats} end-to-end calls (text encoding + denoising + VAE decode).",
             "colab_sd's calls also write the PNG with its metadata (the plain diffusers call does not); the "
             "'without PNG' columns time the same colab_sd call with save=False.",
             "", "| model | size | diffusers it/s | colab_sd it/s | colab_sd / diffusers | without PNG / diffusers | "
                 "diffusers s/image | colab_sd s/image | peak VRAM GiB | first call s (loads) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {'SD1.5' if r['arch'] == 'sd15' else 'SDXL'} | {r['size']}² | {r['direct_its']:.2f} | "
                     f"{r['ours_its']:.2f} | {r['ours_its'] / r['direct_its']:.3f} | "
                     f"{r['direct_s'] / r['unsaved_s']:.3f} | {r['direct_s']:.2f} | "
                     f"{r['ours_s']:.2f} | {r['peak_gib']:.1f} | {r['first_s']:.1f} ({r['loaded']}) |")
    lines += ["", f"Total benchmark time {time.perf_counter() - started:.0f}s; no model was reloaded between "
                  f"calls ({sum(r['later_loads'] for r in rows)} extra loads)."]
    publish("\n".join(lines), args, BEGIN, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
