"""`download()`: a URL in, a verified file in the right models folder out.

The sources turn a URL into a Plan of RemoteFiles; the transfer engine (or a source's own
fetcher: the Hub client, gdown) moves the bytes; this module decides the folder, reads the file's
header when the source does not say what it is, writes the sidecar and reports through events.

Files of unknown kind are fetched into `<root>/other/` (a stable place, so an interrupted download
resumes from its `.part` on the next run), probed, then moved (same filesystem: an atomic rename)
into their kind folder. A link already downloaded (same source in a sidecar, same size)
is not fetched again.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import threading
from pathlib import Path
from typing import Optional

from . import library
from .errors import ColabSDError, DownloadCancelled, DownloadError, InputError
from .events import Cancelled, Completed, Error, Info, Listener, Meter, Progress, Throttle
from .library import kind_dir, models_root, normalize_kind
from .remote import FetchResult, RemoteFile
from .tokens import TokenStore, redact, redact_url
from .place import place, place_tree
from .transfer import TransferOptions, fetch

log = logging.getLogger("colab_sd.api")

# Where a download whose kind is known only once it is here is fetched: `other/`, because that is where it stays
# when the probe cannot tell, and a stable place, so that an interrupted download resumes from its `.part`.
INCOMING = "other"


def download(url: str, kind: Optional[str] = None, models_dir=None, name: Optional[str] = None,
             sha256: Optional[str] = None, on_event: Optional[Listener] = None, *,
             tokens: Optional[TokenStore] = None, connections: Optional[int] = None,
             cancel: Optional[threading.Event] = None, options: Optional[TransferOptions] = None,
             source: Optional[str] = None) -> Path:
    """Download `url` into `<models_dir>/<kind>/` and return the final path (a folder for a
    diffusers repo or a Drive folder).

    `url`: a CivitAI link (any form, an AIR urn, `civitai:VERSION`), a Hugging Face link or
    `owner/repo[/file]`, a Google Drive file or folder link, or any direct http(s) link.
    `kind` ("checkpoint", "lora", …) wins over what the source or the file says; `name` wins over
    the server's file name; `sha256` is checked when given (a source's own hash is checked
    anyway). Events go to `on_event` (throttled; a listener that raises is ignored). Raises a
    `ColabSDError` subclass with a one-line message; KeyboardInterrupt keeps the `.part` for
    resume, emits `cancelled` and propagates.
    """
    from . import sources

    job = redact_url(str(url).strip())
    emit = Throttle(on_event)
    fresh: list[Path] = []  # folders this call creates: a failed download leaves none of them empty
    try:
        user_kind = normalize_kind(kind)
        if sha256 and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256.strip()):
            raise InputError(f"{sha256!r} is not a sha256: give the 64 hex characters (sha256sum prints them)")
        root = models_root(models_dir)
        fresh = library.new_folders(root)
        options = options or TransferOptions()
        if connections is not None:
            options = options.replace(connections=connections)
        tokens = tokens if tokens is not None else TokenStore()
        emit(Info(f"resolving {job}", job=job))
        plan = sources.resolve(url, tokens, source=source)
        for note in plan.notes:
            emit(Info(note, job=job))
        log.info("download %s (%s) kind=%s into %s", job, plan.source, user_kind or plan.kind or "auto", root)
        run = _Run(plan, root, user_kind, emit, job, cancel, options)
        if plan.is_folder:
            if name or sha256:
                raise InputError(f"{job} is a whole folder of files: --name and --sha256 apply to one file only")
            return run.folder()
        remote = plan.files[0]
        if sha256:
            remote = dataclasses.replace(remote, sha256=sha256.strip().lower())
        return run.single(remote, name)
    except (KeyboardInterrupt, DownloadCancelled):
        emit(Cancelled(job=job))
        raise
    except ColabSDError as err:
        emit(Error(message=redact(err), job=job))
        raise
    except Exception as err:  # a library's own exception must not escape the API: one line, ours, token-free
        log.debug("unexpected error in download(%s)", job, exc_info=True)
        wrapped = DownloadError(f"download of {job} failed: {type(err).__name__}: {redact(err)}")
        emit(Error(message=str(wrapped), job=job))
        raise wrapped from None
    finally:
        library.remove_if_empty(fresh)  # also `other/` once a file moved on to its kind's folder


class _Run:
    """One download() call: where things go, and the bookkeeping around the fetch."""

    def __init__(self, plan, root: Path, user_kind: Optional[str], emit: Listener, job: str,
                 cancel: Optional[threading.Event], options: TransferOptions):
        self.plan, self.root, self.user_kind = plan, Path(root), user_kind
        self.emit, self.job, self.cancel, self.options = emit, job, cancel, options

    def _inner(self, event) -> None:
        """Events from a fetch: everything but its own `completed` (ours says where the file ended up)."""
        if not isinstance(event, Completed):
            self.emit(event)

    def _fetch(self, remote: RemoteFile, dest: Path, name: Optional[str], on_event=None) -> FetchResult:
        on_event = on_event or self._inner
        if remote.fetcher is not None:  # called here (not via transfer.fetch) so that its events carry our job
            return remote.fetcher(remote, dest, name=name, on_event=on_event, cancel=self.cancel,
                                  options=self.options, job=self.job)
        return fetch(remote, dest, name=name, on_event=on_event, cancel=self.cancel, options=self.options,
                     job=self.job)

    # -- one file -----------------------------------------------------------------------------------

    def single(self, remote: RemoteFile, name: Optional[str]) -> Path:
        known = self.user_kind or remote.kind
        if name is None:
            have = library.find_by_source(self.root, self.plan.url, kind=known, sha256=remote.sha256)
            if have is not None:
                return self._already(have)
        dest = kind_dir(self.root, known) if known else kind_dir(self.root, INCOMING)
        result = self._fetch(remote, dest, name)
        path = Path(result.path)
        probe = _probe(path)
        kind = known or _kind_from_probe(probe, path.name, self.emit, self.job)
        if not known:
            path = _place(path, kind_dir(self.root, kind), self.emit, self.job)
        meta = self._meta(remote, kind, probe, sha256=result.sha256, size=result.bytes)
        self._sidecar(path, meta, result.skipped)
        self.emit(Completed(path=str(path), bytes=result.bytes, sha256=result.sha256, skipped=result.skipped,
                            job=self.job))
        return path

    # -- a folder: a diffusers repo (many RemoteFiles) or a Drive folder (one fetcher, a folder back) ------

    def folder(self) -> Path:
        first = self.plan.files[0]
        known = self.user_kind or self.plan.kind
        have = library.find_by_source(self.root, self.plan.url, kind=known)
        if have is not None:
            return self._already(have)
        if self.plan.folder:  # the name is known up front (a Hub repo)
            base = (kind_dir(self.root, known) if known else kind_dir(self.root, INCOMING)) / self.plan.folder
            total, skipped, verified = 0, True, 0
            relay = _FolderProgress(self.emit, self.job, self.plan.files)
            for remote in self.plan.files:
                dest = base / remote.subdir if remote.subdir else base
                result = self._fetch(remote, dest, None, on_event=relay)
                relay.file_done(result.bytes)
                total += result.bytes
                skipped = skipped and result.skipped
                verified += bool(remote.sha256)
            path = base
        else:
            dest = kind_dir(self.root, known) if known else kind_dir(self.root, INCOMING)
            result = self._fetch(first, dest, None)
            path, total, skipped, verified = Path(result.path), result.bytes, result.skipped, 0
        probe = _probe(path) if path.is_dir() and (path / "model_index.json").is_file() else None
        kind = known or (probe.kind if probe and probe.kind else _folder_kind(path, self.emit, self.job))
        if not known:
            path = _place(path, kind_dir(self.root, kind), self.emit, self.job)
        meta = self._meta(first, kind, probe, sha256=None, size=total)
        meta["files"] = sum(1 for p in path.rglob("*") if p.is_file())
        meta["sha256_verified_files"] = verified
        if isinstance(meta.get("huggingface"), dict):
            meta["huggingface"] = {k: v for k, v in meta["huggingface"].items() if k != "path"}
        self._sidecar(path, meta, skipped)
        self.emit(Completed(path=str(path), bytes=total, sha256=None, skipped=skipped, job=self.job))
        return path

    # -- bookkeeping ----------------------------------------------------------------------------------

    def _already(self, path: Path) -> Path:
        meta = library.read_sidecar(path)
        self.emit(Info(f"already in the library: {path.parent.name}/{path.name} (from this link on "
                       f"{meta.get('downloaded_at', '?')}); delete it to download again", job=self.job))
        size = meta.get("size") or (path.stat().st_size if path.is_file() else 0)
        self.emit(Completed(path=str(path), bytes=int(size), sha256=meta.get("sha256"), skipped=True, job=self.job))
        return path

    def _meta(self, remote: RemoteFile, kind: str, probe, *, sha256: Optional[str], size: int) -> dict:
        meta = {k: v for k, v in dict(remote.meta).items() if k not in ("folder", "is_folder", "size_estimate")}
        family = getattr(probe, "family", None)
        meta.update({
            "source": redact_url(self.plan.url),
            "source_name": self.plan.source,
            "kind": kind,
            "sha256": sha256,
            "sha256_verified": bool(remote.sha256 and sha256 and remote.sha256.lower() == sha256.lower()),
            "size": size,
            "family": family,
        })
        if probe is not None:
            meta["probe"] = probe.summary
            if getattr(probe, "variant", None):
                meta["variant"] = probe.variant
        if not meta.get("base_model") and family:
            from .probe import FAMILY_NAMES

            meta["base_model"] = FAMILY_NAMES.get(family, family)
        meta.setdefault("trigger_words", [])
        return _scrub(meta)

    def _sidecar(self, path: Path, meta: dict, skipped: bool) -> None:
        """Write the sidecar; when the same bytes were already in the library (a repeat, or the same
        file from another link) keep what it knew and remember this link as another source."""
        old = library.read_sidecar(path)
        same = bool(old) and (skipped or (old.get("sha256") and old.get("sha256") == meta.get("sha256")))
        if same:
            fresh = {k: v for k, v in meta.items() if v not in (None, [], {}, "")}
            new_source = redact_url(meta["source"])
            merged = {**old, **fresh, "source": old.get("source") or new_source}
            also = [s for s in old.get("also_sources") or [] if s != merged["source"]]
            if new_source != merged["source"] and new_source not in also:
                also.append(new_source)
            if also:
                merged["also_sources"] = also
            if old.get("downloaded_at"):
                merged["downloaded_at"] = old["downloaded_at"]
            meta = merged
        library.write_sidecar(path, meta)


class _FolderProgress:
    """One progress stream for a many-file download: bytes of the files done plus the current one,
    against the sum of the sizes the source announced (None when one is unknown)."""

    def __init__(self, emit: Listener, job: str, files):
        sizes = [f.size for f in files]
        self.total = sum(sizes) if all(s is not None for s in sizes) else None
        self.done = 0
        self.emit, self.job = emit, job
        self.meter = Meter()

    def __call__(self, event) -> None:
        if isinstance(event, Progress):
            done = self.done + event.downloaded
            total = max(self.total, done) if self.total is not None else None
            self.emit(self.meter.progress(done, total, job=self.job))
        elif not isinstance(event, Completed):
            self.emit(event)

    def file_done(self, size: int) -> None:
        self.done += size


def _scrub(value):
    """Every string in a sidecar's data with credentials redacted (signed URLs from a source's metadata too)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------- placing files


def _probe(path: Path):
    """The probe's verdict, or None when the file cannot be read as a model (never raises)."""
    try:
        from .probe import inspect

        return inspect(path)
    except Exception:  # a probe failure must not lose a finished download
        log.debug("probe failed for %s", path, exc_info=True)
        return None


def _kind_from_probe(probe, name: str, emit: Listener, job: str) -> str:
    if probe is not None and probe.kind:
        emit(Info(f"{name}: {probe.summary} → {probe.kind}/", job=job))
        return probe.kind
    why = "; ".join(getattr(probe, "reasons", ()) or ()) or "its contents do not look like a known model kind"
    emit(Info(f"{name}: could not tell what this file is ({why}); saved in other/ (use --type to choose)", job=job))
    return "other"


def _folder_kind(path: Path, emit: Listener, job: str) -> str:
    """A folder of files takes the one kind its model files agree on, else `other`."""
    kinds = set()
    for f in path.rglob("*"):
        if f.is_file() and f.name.lower().endswith(library.MODEL_EXTENSIONS):
            probe = _probe(f)
            kinds.add(probe.kind if probe is not None and probe.kind else "other")
    if len(kinds) == 1:
        kind = kinds.pop()
        emit(Info(f"{path.name}/: every model file in it is a {kind} → {kind}/", job=job))
        return kind
    emit(Info(f"{path.name}/: " + ("no model file in it" if not kinds else f"mixed kinds ({', '.join(sorted(kinds))})")
              + "; saved in other/ (use --type to choose)", job=job))
    return "other"


def _place(path: Path, folder: Path, emit: Listener, job: str) -> Path:
    """Move a fetched file or folder into its kind folder through the byte mover's one placement rule:
    the same bytes already there are kept once; a different file of the same name is never replaced
    (the newcomer gets a distinct name, and an Info event says so)."""
    target = folder / path.name
    if path.resolve() == target.resolve():
        return target
    if path.is_dir():
        return place_tree(path, target, emit, job)
    return place(path, target, None, emit, job)[0]
