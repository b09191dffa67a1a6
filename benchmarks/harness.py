"""What the side-by-side generation benchmarks share: paths, options, the tiny model library, the alternating timer.

Importing it puts the repository and `tests/` (for tests/tiny_models.py) on sys.path and keeps Hugging Face
offline, so a benchmark runs as `.venv/bin/python benchmarks/bench_x.py` from any folder. Each benchmark keeps what
it measures and its table; this module only holds the set-up they all repeated.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

from results_section import write_section  # benchmarks/ is on sys.path when a script runs

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "RESULTS.md"
for _folder in (ROOT, ROOT / "tests"):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tiny models need nothing from the Hub; never ask it


def options(description: str, *, steps: int, repeats: int, size: Optional[int] = None,
            size_help: str = "image side in pixels", threads: bool = True) -> argparse.ArgumentParser:
    """The options every generation benchmark takes: --steps, --size (when given a default), --repeats, --threads
    (CPU benchmarks), --results, --no-write. A benchmark adds its own to the parser returned."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--steps", type=int, default=steps, help="sampling steps (default %(default)s)")
    if size is not None:
        p.add_argument("--size", type=int, default=size, help=f"{size_help} (default %(default)s)")
    p.add_argument("--repeats", type=int, default=repeats,
                   help="timed calls per side; the median is compared (default %(default)s)")
    if threads:
        p.add_argument("--threads", type=int, default=1,
                       help="torch CPU threads (default 1: steadier numbers on a shared machine)")
    p.add_argument("--results", default=str(RESULTS), help="markdown file to update (default benchmarks/RESULTS.md)")
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    return p


@contextmanager
def tiny_library(prefix: str = "colab_sd_bench_") -> Iterator[Path]:
    """A temporary folder whose `models/` holds the tiny random models of tests/tiny_models.py as colab_sd's
    library (COLAB_SD_HOME, COLAB_SD_CONFIGS point at it while the block runs). Yields the temporary folder;
    everything in it is removed at the end."""
    import tiny_models

    saved = {name: os.environ.get(name) for name in ("COLAB_SD_HOME", "COLAB_SD_CONFIGS")}
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        tmp = Path(tmp)
        print("building the tiny models…", file=sys.stderr, flush=True)
        library = tiny_models.build_library(tmp / "models")
        os.environ["COLAB_SD_HOME"] = str(library)
        os.environ["COLAB_SD_CONFIGS"] = str(library / "_configs")
        try:
            yield tmp
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def alternate(sides: Sequence[Callable[[], object]], repeats: int,
              check: Optional[Callable[[object], None]] = None,
              sync: Optional[Callable[[], None]] = None) -> list[list[float]]:
    """Seconds per call for each of `sides`, `repeats` calls each, the order reversed every other round so that a
    drifting load on a shared machine hits every side alike. `check(result)` runs on each call's result, outside
    the timing; `sync()` (torch.cuda.synchronize) runs around each call so that GPU work is inside it. Returns one
    list of seconds per side, in the order of `sides`."""
    times: list[list[float]] = [[] for _ in sides]
    order = list(enumerate(sides))
    for i in range(repeats):
        for index, fn in (order if i % 2 == 0 else order[::-1]):
            if sync:
                sync()
            started = time.perf_counter()
            result = fn()
            if sync:
                sync()
            times[index].append(time.perf_counter() - started)
            if check:
                check(result)
    return times


def paired_ratio(ours: Sequence[float], theirs: Sequence[float]) -> float:
    """The median of the per-round ratios ours/theirs: on a shared machine the load drifts, and the median of
    paired ratios follows the overhead rather than the drift."""
    return statistics.median(o / d for o, d in zip(ours, theirs))


def cpu_line(torch) -> str:
    """`CPU (x86_64, 2 cores, torch 2.x, 1 threads)`: the machine a CPU table was measured on."""
    cpu = platform.processor() or platform.machine()
    return f"CPU ({cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads)"


def publish(text: str, args: argparse.Namespace, begin: str, end: str) -> None:
    """Print the table and, unless --no-write, put it between the benchmark's markers in --results."""
    print(text)
    if not args.no_write:
        write_section(Path(args.results), text, begin, end)
