"""Download benchmark: colab-sd against the tools Colab users reach for, side by side, on local nginx.

    .venv/bin/python benchmarks/bench_download.py                 # 256 MiB and 1 GiB, 3 repeats (< 10 min)
    .venv/bin/python benchmarks/bench_download.py --quick         # small files, 1 repeat (< 2 min)
    .venv/bin/python benchmarks/bench_download.py --sizes 512M --repeats 5 --only colab-sd,aria2c

It installs what is missing (Debian: nginx, aria2, curl, wget, time; PyPI: parfive and pypdl, pinned, into a
cache folder outside the project venv), writes random files into a temp folder, serves them from nginx on
127.0.0.1 with two sites (unthrottled; `limit_rate` per connection like a CDN, which also answers like the
Hugging Face Hub so `hf_hub_download` fetches the same bytes), runs every contender as its own process under
`/usr/bin/time` into a fresh folder, checks every output's sha256, prints a table per site and size and the
issue's targets, and writes them to benchmarks/RESULTS.md between the downloads markers.

`_client NAME ...` (used by the benchmark itself) runs one Python contender in this process.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from results_section import write_section  # benchmarks/ is on sys.path when a script runs

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
RESULTS = HERE / "RESULTS.md"
BEGIN, END = "<!-- downloads:begin -->", "<!-- downloads:end -->"
# Python contenders from PyPI, pinned, installed with `pip --target` here so the project venv stays untouched.
PYLIBS = {"parfive": "2.3.1", "pypdl": "1.5.7"}
PYLIB_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "colab-sd-bench" / \
    f"py{sys.version_info.major}{sys.version_info.minor}"
APT = {"nginx": "nginx", "aria2c": "aria2", "curl": "curl", "wget": "wget", "/usr/bin/time": "time"}
HF_REPO, HF_COMMIT = "bench/random-bytes", hashlib.sha1(b"colab-sd-bench").hexdigest()
MiB = 1 << 20


# ---------------------------------------------------------------------------------------------- clients
# Each runs in its own process (so /usr/bin/time measures it alone) and writes one file under `out`.


def client_requests(url: str, out: str) -> None:
    """The seed's way: one streaming GET, 1 MiB chunks, written as they come."""
    import requests

    with requests.get(url, stream=True, timeout=60) as resp:
        resp.raise_for_status()
        with open(Path(out) / url.rsplit("/", 1)[-1], "wb") as fh:
            for chunk in resp.iter_content(chunk_size=MiB):
                fh.write(chunk)


def client_hf(endpoint: str, filename: str, out: str) -> None:
    from huggingface_hub import hf_hub_download

    hf_hub_download(HF_REPO, filename, revision="main", endpoint=endpoint, local_dir=out, token=False)


def client_parfive(url: str, out: str, splits: str) -> None:
    from parfive import Downloader, SessionConfig

    # parfive reads 1 KiB per await by default; 64 KiB gives it a fair chance on a fast link.
    dl = Downloader(max_conn=1, max_splits=int(splits), progress=False, overwrite=True,
                    config=SessionConfig(chunksize=64 * 1024))
    dl.enqueue_file(url, path=out, filename=url.rsplit("/", 1)[-1])
    result = dl.download()
    if result.errors:
        raise SystemExit(f"parfive failed: {result.errors[0].exception!r}")


def client_pypdl(url: str, out: str, segments: str) -> None:
    from pypdl import Pypdl

    dl = Pypdl()
    result = dl.start(url, file_path=str(Path(out) / url.rsplit("/", 1)[-1]), segments=int(segments),
                      display=False, retries=0, block=True)
    if not result or getattr(dl, "failed", None):
        raise SystemExit(f"pypdl failed: {dl.failed!r}")


def client_colab_sd(url: str, out: str, connections: str, verify: str, sha: str) -> None:
    """The Python API with verification switched off (used when the CLI has no switch for that)."""
    import colab_sd
    from colab_sd.transfer import TransferOptions

    colab_sd.download(url, models_dir=out, sha256=sha if verify == "1" else None,
                      connections=int(connections) if connections != "auto" else None,
                      options=TransferOptions(verify=verify == "1"))


CLIENTS: dict[str, Callable[..., None]] = {"requests": client_requests, "hf": client_hf, "parfive": client_parfive,
                                           "pypdl": client_pypdl, "colab-sd": client_colab_sd}


# ---------------------------------------------------------------------------------------------- setup


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def run_quiet(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def ensure_tools(install: bool) -> list[str]:
    """Install the Debian packages that are missing; returns the tools still missing."""
    missing = [tool for tool in APT if not shutil.which(tool)]
    if missing and install:
        pkgs = sorted({APT[t] for t in missing})
        sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
        if sudo is None:
            log(f"missing {', '.join(missing)} and not root: install {' '.join(pkgs)} yourself")
        else:
            log(f"installing {' '.join(pkgs)} with apt-get (once)")
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            run_quiet(sudo + ["apt-get", "update", "-qq"], env=env)
            done = run_quiet(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + pkgs, env=env)
            if done.returncode != 0:
                log("apt-get install failed:\n" + done.stdout[-2000:])
    return [tool for tool in APT if not shutil.which(tool)]


def pylib_env() -> dict:
    env = clean_env()
    env["PYTHONPATH"] = str(PYLIB_DIR)
    return env


def ensure_pylibs(install: bool) -> dict[str, str]:
    """{library: version} of the PyPI contenders importable from PYLIB_DIR, installing the pinned ones first."""
    def probe() -> dict[str, str]:
        code = ("import importlib.metadata as m\nfor n in %r:\n  try:\n    __import__(n); print(n, m.version(n))\n"
                "  except Exception: pass") % (list(PYLIBS),)
        out = run_quiet([PY, "-c", code], env=pylib_env()).stdout
        return dict(line.split() for line in out.splitlines() if len(line.split()) == 2)

    found = probe()
    wanted = [f"{n}=={v}" for n, v in PYLIBS.items() if found.get(n) != v]
    if wanted and install:
        log(f"installing {' '.join(wanted)} into {PYLIB_DIR} (pip --target; the project venv is not touched)")
        done = run_quiet([PY, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--upgrade",
                          "--target", str(PYLIB_DIR)] + wanted)
        if done.returncode != 0:
            log("pip install failed (those contenders are skipped):\n" + done.stdout[-1500:])
        found = probe()
    return found


def clean_env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy") and not k.startswith(("HF_", "COLAB_SD"))}
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", HF_HUB_DISABLE_PROGRESS_BARS="1",
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_IMPLICIT_TOKEN="1", HF_HUB_DISABLE_XET="1",
               PYTHONDONTWRITEBYTECODE="1")
    return env


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?)i?B?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: write e.g. 256M or 1G")
    return int(float(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2).upper()])


def size_label(n: int) -> str:
    return f"{n >> 30} GiB" if n % (1 << 30) == 0 else f"{n >> 20} MiB" if n % MiB == 0 else f"{n} B"


@dataclass
class Source:
    name: str
    size: int
    sha256: str


def make_files(folder: Path, sizes: list[int]) -> list[Source]:
    folder.mkdir(parents=True)
    sources = []
    for size in sizes:
        name = f"random-{size_label(size).replace(' ', '')}.bin"
        digest = hashlib.sha256()
        with open(folder / name, "wb") as fh:
            left = size
            while left:
                block = os.urandom(min(left, 8 * MiB))
                digest.update(block)
                fh.write(block)
                left -= len(block)
        os.chmod(folder / name, 0o644)
        sources.append(Source(name, size, digest.hexdigest()))
    return sources


# ---------------------------------------------------------------------------------------------- nginx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NGINX_CONF = """\
daemon off;
worker_processes {workers};
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    default_type application/octet-stream;
    types {{ }}
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000;
    # Unthrottled: the loopback as fast as the two cores allow.
    server {{
        listen 127.0.0.1:{fast_port};
        root {files};
{files_location}
{hub}
    }}
    # CDN-like: each connection capped, as CivitAI's and the Hub's CDNs do.
    server {{
        listen 127.0.0.1:{slow_port};
        root {files};
        limit_rate {rate};
{files_location}
{hub}
    }}
}}
"""
# Storage CDNs name the file (CivitAI's and the Hub's do). pypdl needs it too: without it, it probes with
# `GET bytes=0-0`, and nginx's 206 carries no Accept-Ranges, so pypdl would fall back to one connection.
FILES_LOCATION = """\
        location ~ ^/(?<fname>[^/]+\\.bin)$ {
            add_header Content-Disposition 'attachment; filename="$fname"';
        }"""
# The Hub's HEAD /{repo}/resolve/{rev}/{file} answers: X-Repo-Commit, ETag, and for LFS files X-Linked-Etag
# (the sha256, quoted) and X-Linked-Size; huggingface_hub refuses a response without X-Repo-Commit or an ETag.
HUB_LOCATION = """\
        location = /{repo}/resolve/{rev}/{name} {{
            alias {files}/{name};
            add_header X-Repo-Commit {commit} always;
            add_header X-Linked-Etag '"{sha256}"' always;
            add_header X-Linked-Size {size} always;
        }}"""


class Nginx:
    def __init__(self, tmp: Path, files: Path, sources: list[Source], rate: str):
        self.tmp, self.fast_port, self.slow_port = tmp, free_port(), free_port()
        # By branch (what users paste) and by commit (what a client asks once the HEAD told it the commit).
        hub = "\n".join(HUB_LOCATION.format(repo=HF_REPO, rev=rev, name=s.name, files=files, commit=HF_COMMIT,
                                            sha256=s.sha256, size=s.size)
                        for s in sources for rev in ("main", HF_COMMIT))
        self.conf = tmp / "nginx.conf"
        self.conf.write_text(NGINX_CONF.format(workers=os.cpu_count() or 1, tmp=tmp, files=files, hub=hub,
                                               files_location=FILES_LOCATION,
                                               fast_port=self.fast_port, slow_port=self.slow_port, rate=rate))
        self.proc: Optional[subprocess.Popen] = None

    def __enter__(self) -> "Nginx":
        self.proc = subprocess.Popen(["nginx", "-p", str(self.tmp), "-c", str(self.conf), "-e", str(self.tmp / "error.log")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"nginx did not start: {self.proc.stderr.read().decode()[-800:]}")
            try:
                for port in (self.fast_port, self.slow_port):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise SystemExit("nginx did not open its ports within 10 s")

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: the master reaps its workers
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def base(self, site: str) -> str:
        return f"http://127.0.0.1:{self.fast_port if site == 'unthrottled' else self.slow_port}"


# ---------------------------------------------------------------------------------------------- contenders


@dataclass
class Contender:
    name: str
    build: Callable[[str, str, Source, Path], list[str]]  # (base url, site, source, out dir) -> argv
    env: Callable[[str], dict] = lambda base: clean_env()  # base url -> environment
    single_stream: bool = False  # its speed on the throttled site is the cap: one repeat tells it all
    note: str = ""


def cli_has_no_verify(cli: str) -> bool:
    try:
        return "--no-verify" in run_quiet([cli, "download", "--help"], timeout=30).stdout
    except OSError:
        return False


def contenders(args, pylibs: dict[str, str], missing: list[str]) -> list[Contender]:
    cli = str(Path(PY).parent / "colab-sd")
    conn = [] if args.connections == "auto" else ["--connections", args.connections]
    me = [PY, str(Path(__file__).resolve()), "_client"]

    if cli_has_no_verify(cli):  # both through the CLI, as users run it
        def colab(verify: bool):
            return lambda base, site, src, out: [
                cli, "download", "--dir", str(out), *conn,
                *(["--sha256", src.sha256] if verify else ["--no-verify"]), f"{base}/{src.name}"]
        how = "CLI"
    else:  # the CLI has no switch for it: both through the Python API, so the overhead compares like with like
        def colab(verify: bool):
            return lambda base, site, src, out: me + ["colab-sd", f"{base}/{src.name}", str(out), args.connections,
                                                      "1" if verify else "0", src.sha256]
        how = "Python API in its own process"
    found = [
        Contender("colab-sd", colab(True), note=f"{how}, sha256 given, connections {args.connections}"),
        Contender("colab-sd no-verify", colab(False), note=f"{how}, verification off"),
        Contender("colab-sd HF URL", lambda base, site, src, out: [
            cli, "download", "--dir", str(out), *conn, f"{base}/{HF_REPO}/resolve/main/{src.name}"],
            env=lambda base: dict(clean_env(), HF_ENDPOINT=base),
            note="CLI on the Hub URL: the Hub's HEAD gives size and sha256, then the segmented engine"),
        Contender("aria2c -x16 -s16 -k1M", lambda base, site, src, out: [
            "aria2c", "-x16", "-s16", "-k1M", "-d", str(out), "-o", src.name, "--console-log-level=error",
            "--summary-interval=0", "--download-result=hide", "--allow-overwrite=true", f"{base}/{src.name}"],
            note="as Colab notebooks call it; default file allocation"),
        Contender("curl", lambda base, site, src, out: ["curl", "-sSfL", "-o", str(out / src.name), f"{base}/{src.name}"],
                  single_stream=True),
        Contender("wget", lambda base, site, src, out: ["wget", "-q", "-O", str(out / src.name), f"{base}/{src.name}"],
                  single_stream=True),
        Contender("requests loop", lambda base, site, src, out: me + ["requests", f"{base}/{src.name}", str(out)],
                  single_stream=True, note="the seed's iter_content(1 MiB) loop"),
        Contender("hf_hub_download", lambda base, site, src, out: me + ["hf", base, src.name, str(out)],
                  single_stream=True, note="huggingface_hub, HEAD + one GET, Hub headers from nginx"),
    ]
    if "parfive" in pylibs:
        found.append(Contender(f"parfive {pylibs['parfive']} (16 splits)", lambda base, site, src, out: me + [
            "parfive", f"{base}/{src.name}", str(out), "16"], env=lambda base: pylib_env(), note="max_splits=16, 64 KiB chunks"))
    if "pypdl" in pylibs:
        found.append(Contender(f"pypdl {pylibs['pypdl']} (16 segments)", lambda base, site, src, out: me + [
            "pypdl", f"{base}/{src.name}", str(out), "16"], env=lambda base: pylib_env(), note="segments=16"))
    tools = {"aria2c": "aria2c", "curl": "curl", "wget": "wget"}
    found = [c for c in found if not any(c.name.startswith(t) and tools[t] in missing for t in tools)]
    if args.only:
        keep = [w.strip().lower() for w in args.only.split(",")]
        found = [c for c in found if any(c.name.lower().startswith(k) for k in keep)]
    return found


# ---------------------------------------------------------------------------------------------- running


@dataclass
class Run:
    wall: float
    rss_mb: float
    cpu: float
    ok: bool
    why: str = ""


@dataclass
class Cell:
    contender: Contender
    runs: list[Run] = field(default_factory=list)

    @property
    def good(self) -> list[Run]:
        return [r for r in self.runs if r.ok]

    @property
    def failed(self) -> bool:
        return bool(self.runs) and len(self.good) < len(self.runs)

    def median(self, attr: str) -> Optional[float]:
        vals = [getattr(r, attr) for r in self.good]
        return statistics.median(vals) if vals else None

    def peak(self, attr: str) -> Optional[float]:
        vals = [getattr(r, attr) for r in self.good]
        return max(vals) if vals else None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(8 * MiB):
            digest.update(block)
    return digest.hexdigest()


def output_file(out: Path) -> tuple[Optional[Path], list[str]]:
    """The downloaded file (largest regular file) and any other leftovers (ignoring the Hub client's .cache)."""
    files = [p for p in out.rglob("*") if p.is_file() and ".cache" not in p.relative_to(out).parts]
    if not files:
        return None, []
    files.sort(key=lambda p: p.stat().st_size, reverse=True)
    main = files[0]
    sidecar = main.with_name(main.name + ".json")  # colab-sd's library metadata: part of its job, not a leftover
    return main, [str(p.relative_to(out)) for p in files[1:] if p != sidecar]


def run_once(c: Contender, base: str, site: str, src: Source, work: Path, timeout: float) -> Run:
    out = Path(tempfile.mkdtemp(prefix="out-", dir=work))
    timing = out.with_name(out.name + ".time")
    argv = ["/usr/bin/time", "-f", "%e %M %U %S", "-o", str(timing)] + c.build(base, site, src, out)
    os.sync()  # the previous contender's dirty pages must not be written back on this one's clock
    start = time.perf_counter()
    try:
        proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=c.env(base), cwd=out,
                              timeout=timeout, start_new_session=True)
        wall = time.perf_counter() - start
        rc, err = proc.returncode, proc.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired:
        wall, rc, err = time.perf_counter() - start, -1, f"timed out after {timeout:.0f} s"
    try:
        fields = timing.read_text().split("\n")[-2].split() if timing.exists() else []
        _, rss_kb, user, sys_ = (float(x) for x in fields[-4:]) if len(fields) >= 4 else (0, 0, 0, 0)
    except ValueError:
        rss_kb = user = sys_ = 0.0
    run = Run(wall=wall, rss_mb=rss_kb / 1024, cpu=user + sys_, ok=False)
    path, extra = output_file(out)
    if rc != 0:
        run.why = f"exit {rc}: {err.strip().splitlines()[-1][:160] if err.strip() else ''}"
    elif path is None:
        run.why = "no file written"
    elif path.stat().st_size != src.size:
        run.why = f"wrong size {path.stat().st_size} != {src.size}"
    elif file_sha256(path) != src.sha256:
        run.why = "sha256 differs from the source"
    elif extra:
        run.why = f"stray files left: {', '.join(extra[:3])}"
    else:
        run.ok = True
    shutil.rmtree(out, ignore_errors=True)  # deleting before writeback drops the dirty pages for free
    timing.unlink(missing_ok=True)
    return run


def bench(args, nginx: Nginx, sources: list[Source], cands: list[Contender], work: Path) -> dict:
    results: dict[tuple[str, int], list[Cell]] = {}
    for site in args.sites:
        base = nginx.base(site)
        for src in sources:
            cells = [Cell(c) for c in cands]
            results[(site, src.size)] = cells
            limit = 60 + 4 * src.size / parse_size(args.rate)

            def record(cell: Cell, run: Run, rep: int) -> None:
                cell.runs.append(run)
                mbs = src.size / MiB / run.wall if run.wall else 0
                log(f"{site:11} {size_label(src.size):>8} #{rep + 1} {cell.contender.name:30} "
                    f"{run.wall:7.2f} s {mbs:8.1f} MiB/s {run.rss_mb:6.0f} MB {run.cpu:6.2f} cpu-s"
                    f"{'' if run.ok else '  FAIL: ' + run.why}")

            for rep in range(args.repeats):
                capped = []
                for cell in cells:  # interleaved, so slow drift on a shared machine hits everyone alike
                    if site == "throttled" and cell.contender.single_stream:
                        capped += [cell] if rep < args.single_repeats else []
                        continue
                    record(cell, run_once(cell.contender, base, site, src, work, timeout=limit), rep)
                if capped:
                    # One capped connection each (25 MiB/s, a few % of a core): run side by side, their times are
                    # the cap's, and the 1 GiB file does not cost four times 42 s.
                    with ThreadPoolExecutor(len(capped)) as pool:
                        runs = list(pool.map(lambda c: run_once(c.contender, base, site, src, work, limit), capped))
                    for cell, run in zip(capped, runs):
                        record(cell, run, rep)
    return results


# ---------------------------------------------------------------------------------------------- reporting


def table(cells: list[Cell], size: int) -> list[str]:
    aria = next((c.median("wall") for c in cells if c.contender.name.startswith("aria2c")), None)
    rows = ["| contender | runs | median wall s | MiB/s | peak RSS MB | CPU s | × aria2c |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for c in cells:
        wall = c.median("wall")
        if wall is None:
            why = c.runs[0].why if c.runs else "not run"
            rows.append(f"| {c.contender.name} | 0/{len(c.runs)} | FAIL: {why} | | | | |")
            continue
        ratio = f"{wall / aria:.2f}" if aria else "–"
        fails = f" ({len(c.runs) - len(c.good)} FAIL: {next(r.why for r in c.runs if not r.ok)})" if c.failed else ""
        rows.append(f"| {c.contender.name}{fails} | {len(c.good)}/{len(c.runs)} | {wall:.2f} | {size / MiB / wall:.0f} | "
                    f"{c.peak('rss_mb'):.0f} | {c.median('cpu'):.2f} | {ratio} |")
    return rows


def targets(results: dict, sizes: list[int]) -> list[str]:
    """The issue's targets, each with the numbers that decide it."""
    lines = []

    def find(cells, prefix):
        return next((c for c in cells if c.contender.name.startswith(prefix)), None)

    for (site, size), cells in results.items():
        ours, raw, aria = find(cells, "colab-sd"), find(cells, "colab-sd no-verify"), find(cells, "aria2c")
        label = f"{site}, {size_label(size)}"
        if ours is None or ours.median("wall") is None:
            lines.append(f"- {label}: colab-sd has no successful run: **MISS**")
            continue
        t = ours.median("wall")
        if site == "throttled":
            if aria and aria.median("wall"):
                r = t / aria.median("wall")
                lines.append(f"- {label}: colab-sd / aria2c = {r:.2f} (target <= 1.00): **{'ok' if r <= 1.0 else 'MISS'}**")
            singles = [c for c in cells if c.contender.name in ("curl", "requests loop") and c.median("wall")]
            if singles:
                best = min(singles, key=lambda c: c.median("wall"))
                x = best.median("wall") / t
                lines.append(f"- {label}: colab-sd is {x:.1f}× faster than one stream ({best.contender.name}) "
                             f"(target >= 10×): **{'ok' if x >= 10 else 'MISS'}**")
        else:
            others = [c for c in cells if c.median("wall") and not c.contender.name.startswith("colab-sd")]
            if others:
                fastest = min(others, key=lambda c: c.median("wall"))
                r = t / fastest.median("wall")
                extra = (f"; without verification {raw.median('wall') / fastest.median('wall'):.2f}"
                         if raw and raw.median("wall") else "")
                lines.append(f"- {label}: colab-sd / fastest other tool ({fastest.contender.name}) = {r:.2f} "
                             f"(target <= 1.20): **{'ok' if r <= 1.2 else 'MISS'}**{extra}")
        hub, hf = find(cells, "colab-sd HF URL"), find(cells, "hf_hub_download")
        if hub and hf and hub.median("wall") and hf.median("wall"):
            lines.append(f"- {label}: a Hub file through colab-sd takes {hub.median('wall'):.2f} s, through "
                         f"hf_hub_download {hf.median('wall'):.2f} s: hf_hub_download / colab-sd = "
                         f"{hf.median('wall') / hub.median('wall'):.2f} (measured, no target)")
        if raw and raw.median("wall"):
            over = t / raw.median("wall") - 1
            lines.append(f"- {label}: verification adds {over * 100:+.0f} % ({t:.2f} s vs {raw.median('wall'):.2f} s) "
                         f"(target <= 15 %): **{'ok' if over <= 0.15 else 'MISS'}**")
    big = max(sizes)
    rss = [c.peak("rss_mb") for (site, size), cells in results.items() if size == big for c in cells
           if c.contender.name.startswith("colab-sd") and c.peak("rss_mb") is not None]
    if rss:
        lines.append(f"- peak RSS of colab-sd on {size_label(big)}: {max(rss):.0f} MB (target < 150 MB"
                     f"{'' if big >= 1 << 30 else ', stated for 1 GiB'}): **{'ok' if max(rss) < 150 else 'MISS'}**")
    return lines


def version_of(cmd: list[str], pattern: str = r"[\d.]+\d") -> str:
    try:
        out = run_quiet(cmd, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "missing"
    m = re.search(pattern, out)
    return m.group(0) if m else out.strip().splitlines()[0][:60] if out.strip() else "?"


def machine(pylibs: dict[str, str]) -> list[str]:
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor() or "?")
    mem = next((int(l.split()[1]) // 1024 for l in Path("/proc/meminfo").read_text().splitlines()
                if l.startswith("MemTotal")), 0)
    pyver = run_quiet([PY, "-c", "import importlib.metadata as m;print(m.version('requests'), "
                                 "m.version('huggingface_hub'), m.version('colab-sd'))"]).stdout.split()
    commit = run_quiet(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"]).stdout.strip()
    osname = next((l.split("=", 1)[1].strip('"') for l in Path("/etc/os-release").read_text().splitlines()
                   if l.startswith("PRETTY_NAME=")), "?") if Path("/etc/os-release").exists() else "?"
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores (nproc); RAM {mem / 1024:.1f} GiB; {osname}; kernel {platform.release()}",
        f"- colab-sd {pyver[2] if len(pyver) > 2 else '?'} at `{commit}`; Python {platform.python_version()}; "
        f"requests {pyver[0] if pyver else '?'}; huggingface_hub {pyver[1] if len(pyver) > 1 else '?'}",
        f"- nginx {version_of(['nginx', '-v'])}; aria2c {version_of(['aria2c', '--version'])}; "
        f"curl {version_of(['curl', '--version'])}; wget {version_of(['wget', '--version'])}; "
        + "; ".join(f"{k} {v}" for k, v in pylibs.items()),
    ]


def markdown(args, results: dict, sources: list[Source], pylibs: dict, started: str, load: tuple, cands,
             minutes: float) -> str:
    sizes = [s.size for s in sources]
    out = ["## Downloads", "",
           f"Measured {started} UTC in {minutes:.1f} min with "
           f"`{' '.join(['benchmarks/bench_download.py'] + sys.argv[1:])}` "
           f"({args.repeats} repeat{'s' if args.repeats != 1 else ''}; on the throttled site the single-stream contenders run "
           f"{args.single_repeats}×, side by side: each is held to the per-connection cap, which sets their time). Load average before/after: {load[0]:.2f} / {load[1]:.2f}.", ""]
    out += machine(pylibs)
    out += ["", "Setup: nginx on 127.0.0.1, two sites serving the same random files: *unthrottled* and *throttled* "
            f"(`limit_rate {args.rate}` per connection, like a CDN; it also answers as the Hub does for "
            "`hf_hub_download`). Every contender is a fresh process writing into a fresh folder, timed by "
            "`/usr/bin/time` (peak RSS, user+sys CPU of the client; nginx's CPU is not counted); every output's "
            "sha256 is checked against the source (a wrong file is a FAIL). MiB/s = size / median wall time.", "",
            "Caveats: the machine has 2 cores shared by nginx, the client and other work running at the same time, so "
            "the unthrottled site measures CPU cost as much as networking. colab-sd fsyncs before its rename (the "
            "others leave writeback to the kernel); aria2c runs with its default file allocation (zero-filled).", ""]
    out += ["Contenders: " + "; ".join(f"**{c.name}**" + (f" ({c.note})" if c.note else "") for c in cands), ""]
    for (site, size), cells in results.items():
        out += [f"### {site}, {size_label(size)}", ""] + table(cells, size) + [""]
    out += ["### Targets (issue 6)", ""]
    if args.quick:
        out += ["*Quick run: files this small measure process start-up more than transfer; the targets are "
                "meant for the default sizes.*", ""]
    out += targets(results, sizes) + [""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------- main


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="256M,1G", help="file sizes, comma-separated (default 256M,1G)")
    p.add_argument("--repeats", type=int, default=3, help="runs per contender, site and size; the median is shown")
    p.add_argument("--single-repeats", type=int, default=1,
                   help="runs of the single-stream contenders on the throttled site, where they run side by side "
                        "(the cap fixes their time)")
    p.add_argument("--quick", action="store_true", help="16 MiB and 64 MiB, one repeat (about a minute)")
    p.add_argument("--rate", default="25m", help="nginx limit_rate per connection on the throttled site (default 25m)")
    p.add_argument("--connections", default="auto", help="colab-sd --connections (default: its automatic choice)")
    p.add_argument("--sites", default="throttled,unthrottled")
    p.add_argument("--only", help="comma-separated name prefixes of the contenders to run")
    p.add_argument("--workdir", help="where files go (default: a new temp folder, removed at the end)")
    p.add_argument("--results", default=str(RESULTS), help="markdown file to update (default benchmarks/RESULTS.md)")
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    p.add_argument("--no-install", action="store_true", help="do not apt-get / pip install missing contenders")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats = "16M,64M", 1
    args.sites = [s.strip() for s in args.sites.split(",") if s.strip() in ("throttled", "unthrottled")]
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    missing = ensure_tools(not args.no_install)
    if "nginx" in missing or "/usr/bin/time" in missing:
        log("nginx and /usr/bin/time are required (apt-get install nginx time)")
        return 2
    if not (Path(PY).parent / "colab-sd").exists():
        log(f"no colab-sd next to {PY}: run this with the project's venv (.venv/bin/python) or run_download_bench.sh")
        return 2
    pylibs = ensure_pylibs(not args.no_install)
    cands = contenders(args, pylibs, missing)
    started, t0 = time.strftime("%Y-%m-%d %H:%M", time.gmtime()), time.monotonic()
    load0 = os.getloadavg()[0]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="colab-sd-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o755)  # nginx workers run as an unprivileged user when started by root
    try:
        log(f"writing {', '.join(size_label(s) for s in sizes)} of random bytes into {work}")
        sources = make_files(work / "files", sizes)
        os.chmod(work / "files", 0o755)
        (work / "nginx").mkdir(exist_ok=True)
        with Nginx(work / "nginx", work / "files", sources, args.rate) as ng:
            log(f"nginx: unthrottled {ng.base('unthrottled')}, throttled {ng.base('throttled')} ({args.rate}/connection)")
            results = bench(args, ng, sources, cands, work)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    text = markdown(args, results, sources, pylibs, started, (load0, os.getloadavg()[0]), cands,
                    (time.monotonic() - t0) / 60)
    print(text)
    if not args.no_write:
        write_section(Path(args.results), text, BEGIN, END)
        log(f"results written to {args.results}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "_client":
        CLIENTS[sys.argv[2]](*sys.argv[3:])
        sys.exit(0)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    sys.exit(main())
