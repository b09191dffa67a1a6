"""Generation overhead: colab_sd.generate() against calling the same diffusers pipeline directly.

    .venv/bin/python benchmarks/bench_generation.py                  # tiny SD1 + SDXL, 128², 20 steps, 7 repeats
    .venv/bin/python benchmarks/bench_generation.py --repeats 3 --size 64 --steps 10 --no-write

Both sides run the same pipeline object (the one colab_sd loaded and cached), the same scheduler, prompt, size,
steps and seed, on the CPU, offline, with the tiny random models of tests/tiny_models.py (single-file
checkpoints, loaded through colab_sd's real path). colab_sd's side includes everything a user's call does:
request validation, model resolution (header probe, library listing), LoRA/embedding bookkeeping, step events,
PNG encoding with A1111 metadata and the file write. Calls alternate between the two sides; the median of each
is compared. The load counter is printed to show that only the first call loads the model.
Writes its table to benchmarks/RESULTS.md between the generation markers (--no-write to skip).
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from harness import alternate, cpu_line, options, paired_ratio, publish, tiny_library  # benchmarks/ is on sys.path

BEGIN, END = "<!-- generation:begin -->", "<!-- generation:end -->"


def bench_model(model: str, args, out_dir: Path) -> dict:
    import torch

    import colab_sd
    from colab_sd.events import Collect
    from colab_sd.generation import load_count
    from colab_sd.generation.cache import CACHE

    fields = dict(model=model, prompt="a photo of a cat, high quality", negative_prompt="blurry", steps=args.steps,
                  width=args.size, height=args.size, seed=1234, sampler="DPM++ 2M", schedule="Karras",
                  outputs_dir=str(out_dir))
    loads_before = load_count()
    first = time.perf_counter()
    colab_sd.generate(**fields, on_event=Collect())
    first = time.perf_counter() - first
    loads_after_first = load_count()
    pipe = CACHE.entry.pipe

    def direct():
        generator = [torch.Generator("cpu").manual_seed(1234)]
        with torch.inference_mode():
            return pipe(prompt=fields["prompt"], negative_prompt=fields["negative_prompt"],
                        num_inference_steps=args.steps, guidance_scale=7.0, width=args.size, height=args.size,
                        generator=generator, output_type="pil").images

    outside = []  # per call: seconds colab_sd spent outside diffusers' pipeline call

    def ours():
        started = time.perf_counter()
        result = colab_sd.generate(**fields, on_event=Collect())
        total = time.perf_counter() - started
        outside.append((total - result.info["pipeline_seconds"], result.info["pipeline_seconds"]))
        return result.images

    direct()  # warm both paths once more at this size
    ours_times, direct_times = alternate((ours, direct), args.repeats)
    same = (colab_sd.generate(**fields, save=False).images[0].tobytes() == direct()[0].tobytes())
    paired = paired_ratio(ours_times, direct_times)  # each colab_sd call against the diffusers call next to it
    return {"model": model, "first_call_s": first, "loads_first": loads_after_first - loads_before,
            "loads_after": load_count() - loads_after_first, "ours": statistics.median(ours_times),
            "direct": statistics.median(direct_times), "paired": paired, "same_pixels": same,
            "outside": statistics.median(o for o, _ in outside),
            "outside_ratio": statistics.median((o + p) / p for o, p in outside),
            "repeats": args.repeats}


def main(argv=None) -> int:
    p = options(__doc__.split("\n\n")[0], steps=20, size=128, repeats=7)
    p.add_argument("--models", default="tiny-sd1,tiny-sdxl", help="tiny models to run (default tiny-sd1,tiny-sdxl)")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    with tiny_library() as tmp:
        rows = [bench_model(m.strip(), args, tmp / "outputs") for m in args.models.split(",") if m.strip()]

    header = (f"{cpu_line(torch)}, tiny random models, {args.size}x{args.size}, {args.steps} steps, DPM++ 2M Karras, "
              f"median of {args.repeats}")
    lines = ["### Generation overhead: colab_sd.generate vs the same diffusers pipeline called directly", "",
             header, "",
             "| model | diffusers direct (s) | colab_sd.generate (s) | ratio of medians | median paired ratio | "
             "colab_sd's own work per call | in-call ratio | first call (s, loads) | loads on later calls | "
             "same pixels |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    worst = 0.0
    for r in rows:
        ratio = r["ours"] / r["direct"]
        worst = max(worst, r["outside_ratio"])
        lines.append(f"| {r['model']} (single file) | {r['direct']:.3f} | {r['ours']:.3f} | {ratio:.3f} | "
                     f"{r['paired']:.3f} | {r['outside'] * 1000:.1f} ms | {r['outside_ratio']:.3f} "
                     f"({(r['outside_ratio'] - 1) * 100:+.1f} %) | {r['first_call_s']:.2f} "
                     f"({r['loads_first']}) | {r['loads_after']} | {'yes' if r['same_pixels'] else 'NO'} |")
    verdict = "within" if worst <= 1.05 else "ABOVE"
    lines += ["", f"Target: overhead within 5 % → worst in-call ratio {worst:.3f}: {verdict} target.",
              "",
              "*Ratio of medians* and *median paired ratio* compare whole calls of both sides, interleaved; on a "
              "busy shared machine they move by several per cent between runs. *colab_sd's own work* is measured "
              "inside each colab_sd call (its wall time minus the time inside diffusers' pipeline call): "
              "validation, model resolution (header probe, library listing), LoRA/embedding bookkeeping, scheduler "
              "setup, step events and the PNG with its A1111 metadata written to disk; the *in-call ratio* is "
              "(own work + pipeline) / pipeline, the overhead the target is about. Later calls with the same model "
              "load nothing (load count shown); both sides give the same pixels."]
    publish("\n".join(lines), args, BEGIN, END)
    return 0 if all(r["loads_after"] == 0 and r["same_pixels"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
