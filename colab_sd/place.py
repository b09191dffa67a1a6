"""Placing verified bytes under their final name: the one place that decides "already there" and
"never replace another file".

Every path that lands a file goes through here: the HTTP engine's `.part`, a file another client
(gdown) fetched, and the library moving a file into its kind folder once its header was read.
Rules: the same bytes already under the name → keep them, drop the newcomer; different bytes →
the newcomer gets a distinct name (`model-2.safetensors`) and an Info event says so. A different
file never replaces an existing model.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from .errors import IntegrityError
from .events import Completed, Info, Listener
from .hashing import file_sha256
from .remote import FetchResult


SIDECAR = ".json"  # `<file>.json` beside every model (library.SIDECAR_SUFFIX): its name belongs to that file


def sidecar_clash(path: Path) -> bool:
    """True when a file placed at `path` would share a name with a sidecar: `path.json` is another
    downloaded file (it has a sidecar of its own), or `path` is the sidecar slot of an existing file.
    Either way writing one would destroy the other, so such a name counts as taken."""
    slot = path.with_name(path.name + SIDECAR)
    if os.path.lexists(slot) and os.path.lexists(slot.with_name(slot.name + SIDECAR)):
        return True
    return path.name.endswith(SIDECAR) and os.path.isfile(path.with_name(path.name[:-len(SIDECAR)]))


def _taken(path: Path) -> bool:
    return os.path.lexists(path) or sidecar_clash(path)


def distinct(path: Path) -> Path:
    """`path`, or the first free `stem-N.ext` beside it (N from 2); a name whose sidecar slot clashes is not free."""
    if not _taken(path):
        return path
    stem, dot, ext = path.name.partition(".")
    n = 2
    while _taken(path.with_name(f"{stem}-{n}{dot}{ext}")):
        n += 1
    return path.with_name(f"{stem}-{n}{dot}{ext}")


def _same_bytes(a: Path, b: Path, a_sha: Optional[str] = None) -> bool:
    if not (a.is_file() and b.is_file()) or a.stat().st_size != b.stat().st_size:
        return False
    return (a_sha or file_sha256(a).hexdigest()) == file_sha256(b).hexdigest()


def place(src: Path, final: Path, sha: Optional[str], emit: Listener, job: Optional[str]) -> tuple[Path, bool]:
    """Rename the verified file `src` to `final` (same filesystem: atomic); returns (path, already_there).

    `sha` is src's sha256 when known (saves hashing it again)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(final) and Path(src).resolve() != final.resolve():
        if _same_bytes(Path(src), final, sha):
            Path(src).unlink()
            emit(Info(f"{final.name} is already there with the same contents; keeping it", job=job))
            return final, True
        other = distinct(final)
        emit(Info(f"{final.parent.name}/{final.name} already exists with other contents; this download is "
                  f"saved as {other.name} (the existing file is untouched)", job=job))
        final = other
    elif sidecar_clash(final):
        other = distinct(final)
        emit(Info(f"{final.name} would share its name with another model's sidecar (.json); this download is "
                  f"saved as {other.name}", job=job))
        final = other
    os.replace(src, final)
    return final, False


def place_tree(src: Path, final: Path, emit: Listener, job: Optional[str]) -> Path:
    """Move the folder `src` to `final`. Into an existing folder only when no file in both differs (then
    the new files join it); otherwise the newcomer gets a distinct folder name."""
    if not os.path.lexists(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, final)
        return final
    files = [p for p in sorted(src.rglob("*")) if p.is_file()]
    clash = [p for p in files if os.path.lexists(final / p.relative_to(src))
             and not _same_bytes(p, final / p.relative_to(src))]
    if clash or not final.is_dir():
        other = distinct(final)
        emit(Info(f"{final.parent.name}/{final.name}/ already exists with other contents; this download is saved "
                  f"as {other.name}/ (the existing folder is untouched)", job=job))
        os.replace(src, other)
        return other
    for path in files:
        target = final / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(target):
            path.unlink()
        else:
            os.replace(path, target)
    _remove_empty(src)
    return final


def _remove_empty(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir():
            try:
                path.rmdir()
            except OSError:
                pass
    try:
        folder.rmdir()
    except OSError:
        pass


def already_there(final: Path, expected_sha: str, emit: Listener, job: Optional[str]) -> Optional[FetchResult]:
    """A FetchResult when `final` exists with the sha256 `expected_sha`, else None (nothing is fetched then)."""
    if not final.is_file() or file_sha256(final).hexdigest() != expected_sha:
        return None
    size = final.stat().st_size
    emit(Info(f"{final.name} is already there and matches; skipping", job=job))
    emit(Completed(path=str(final), bytes=size, sha256=expected_sha, skipped=True, job=job))
    return FetchResult(path=final, bytes=size, sha256=expected_sha, skipped=True)


def adopt(got: Path, final: Path, *, expected_sha: Optional[str], expected_size: Optional[int], emit: Listener,
          job: Optional[str], what: str) -> FetchResult:
    """Verify a file another client wrote (size, sha256) and place it: the same checks and placement as
    the HTTP engine's. A mismatch deletes it and raises IntegrityError naming `what`."""
    size = got.stat().st_size
    digest = file_sha256(got).hexdigest()
    if expected_size is not None and size != expected_size:
        got.unlink(missing_ok=True)
        raise IntegrityError(f"{what} has {size} bytes, the source said {expected_size}: deleted; run again")
    if expected_sha and digest != expected_sha.lower():
        got.unlink(missing_ok=True)
        raise IntegrityError(sha256_mismatch(what, expected_sha.lower(), digest))
    path, same = place(got, final, digest, emit, job)
    emit(Completed(path=str(path), bytes=size, sha256=digest, skipped=same, job=job))
    return FetchResult(path=path, bytes=size, sha256=digest, skipped=same)


def sha256_mismatch(what: str, expected: str, got: str) -> str:
    """The one-line message for bytes whose sha256 is not the expected one (they were not kept)."""
    return (f"{what}: sha256 mismatch, expected {expected} but got {got}; the file was not kept (check the "
            f"expected hash and the link: a different file behind the link has another hash)")
