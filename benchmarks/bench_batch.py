"""Batch throughput: images per minute for N worker processes against one, on the tiny models, on this CPU.

    .venv/bin/python benchmarks/bench_batch.py [--jobs 12] [--steps 8] [--size 128] [--write]

Rows (same jobs, same seeds each time):
- lone generate: `colab_sd.generate` in a loop in this process, model already loaded (what a user does today);
- workers=2: `generate_batch` on two spawned worker processes, each with this process's torch thread count, so
  each image is pixel-identical to the lone row's.
Both at 1 torch thread (two workers then fill the two cores exactly), and with --all-threads also at torch's default
count (each worker then wants every core: 2 × 2 threads on 2 cores).
"Total" counts everything from the call to the last image (worker start-up and model load included);
"steady" counts only the images after every worker finished its first one.

At the end it prints the expected Kaggle 2×T4 figure, ESTIMATED from single-T4 rates given as inputs (never
measured here: this machine has no GPU).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # tiny_models
sys.path.insert(0, str(HERE))  # results_section


def measure(label, run, jobs: int) -> dict:
    from colab_sd.generation.batch_jobs import JobDone

    done_at = []
    started = time.monotonic()

    def on_event(event):
        if isinstance(event, JobDone):
            done_at.append(time.monotonic() - started)

    workers = run(on_event, done_at, started)
    total = time.monotonic() - started
    done_at.sort()
    warm = done_at[workers - 1] if len(done_at) >= workers else 0.0
    steady_n = len(done_at) - workers
    steady = steady_n / (done_at[-1] - warm) * 60 if steady_n > 0 and done_at[-1] > warm else float("nan")
    row = {"label": label, "workers": workers, "jobs": jobs, "total_s": total, "total_ipm": jobs / total * 60,
           "steady_ipm": steady}
    print(f"{label:<34} {total:7.1f} s  {row['total_ipm']:7.1f} img/min total  {steady:7.1f} img/min steady",
          flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--t4-its", type=float, default=4.7,
                        help="single-T4 SD1.5 512² fp16 it/s to estimate from (default: the 4.68 it/s of a Colab T4 "
                             "in diffusers #1050; measure yours with `colab-sd generate` on the T4)")
    parser.add_argument("--t4-overhead", type=float, default=0.6,
                        help="seconds per image outside the steps on a T4 (text encoder, VAE decode, PNG)")
    parser.add_argument("--all-threads", action="store_true",
                        help="also run lone and 2 workers at torch's default thread count (2 workers × N threads "
                             "oversubscribe the cores: on a busy machine that is many times slower)")
    parser.add_argument("--write", action="store_true", help="write the table into benchmarks/RESULTS.md")
    args = parser.parse_args()

    os.environ["HF_HUB_OFFLINE"] = "1"
    import tiny_models
    import torch

    import colab_sd
    from colab_sd.generation.batch import generate_batch

    library = tiny_models.copy_library(Path(tempfile.mkdtemp(prefix="bench_batch_")) / "models")
    os.environ.update(COLAB_SD_HOME=str(library), COLAB_SD_CONFIGS=str(library / "_configs"),
                      COLAB_SD_OUTPUTS=tempfile.mkdtemp(prefix="bench_batch_out_"))
    fields = dict(model="tiny-sd1", steps=args.steps, width=args.size, height=args.size, prompt="a red house")
    seeds = list(range(100, 100 + args.jobs))
    colab_sd.generate(save=False, seed=1, **fields)  # load once: the lone row starts warm, as in a notebook
    threads = torch.get_num_threads()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({threads} threads), {args.jobs} jobs of {args.size}² × {args.steps} steps", flush=True)

    def lone(on_event, done_at, started):
        for seed in seeds:
            colab_sd.generate(seed=seed, **fields)
            done_at.append(time.monotonic() - started)
        return 1

    def batch(workers):
        def run(on_event, done_at, started):
            result = generate_batch(None, seeds=seeds, workers=workers, device="cpu", on_event=on_event, **fields)
            assert result.ok, result.summary()
            return workers
        return run

    rows = []
    for n in ([1, threads] if args.all_threads and threads != 1 else [1]):
        # A worker computes with the caller's thread count (what keeps its pixels equal to a lone generate here).
        torch.set_num_threads(n)
        lone_row = measure(f"lone generate, {n} thread(s)", lone, args.jobs)
        pool_row = measure(f"generate_batch workers=2, {n} thread(s) each", batch(2), args.jobs)
        rows += [lone_row, pool_row]
        print(f"  workers=2 vs lone at {n} thread(s): steady ×{pool_row['steady_ipm'] / lone_row['steady_ipm']:.2f},"
              f" total ×{pool_row['total_ipm'] / lone_row['total_ipm']:.2f}", flush=True)
    torch.set_num_threads(threads)

    per_image = 25 / args.t4_its + args.t4_overhead
    one_t4 = 60 / per_image
    print(f"ESTIMATED Kaggle 2×T4, SD1.5 512², 25 steps: one T4 {one_t4:.1f} img/min (from {args.t4_its} it/s + "
          f"{args.t4_overhead} s/image) → two workers ≈ {2 * one_t4:.1f} img/min (×2: separate GPUs, one process "
          f"each; not measured)")
    if args.write:
        write(rows, args, threads, one_t4)
    return 0


def write(rows, args, threads, one_t4) -> None:
    import torch
    from results_section import write_section

    lines = [
        "### Batches: images per minute, N worker processes against one (tiny SD1 models, CPU)",
        "",
        f"{os.cpu_count()} CPUs (shared with other work while measured), torch {torch.__version__} (default "
        f"{threads} threads), {args.jobs} jobs of {args.size}² × {args.steps} steps; each row says the torch threads "
        f"per process. *Total* includes worker start-up and model loads; *steady* counts the images after each "
        f"worker's first.",
        "",
        "| run | workers | total s | img/min total | img/min steady |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['label']} | {r['workers']} | {r['total_s']:.1f} | {r['total_ipm']:.1f} | {r['steady_ipm']:.1f} |"
              for r in rows]
    lines += ["", f"Kaggle 2×T4, SD1.5 512², 25 steps: **estimated** {2 * one_t4:.0f} img/min "
                  f"(2 × {one_t4:.1f} from {args.t4_its} it/s per T4 + {args.t4_overhead} s/image; not measured)."]
    write_section(HERE / "RESULTS.md", "\n".join(lines), "<!-- batch:begin -->", "<!-- batch:end -->")


if __name__ == "__main__":  # the guard matters: spawned workers import this module again
    sys.exit(main())
