"""Google Drive: file and folder links, fetched with gdown.

gdown knows Drive's dance (the virus-scan confirmation page, drive.usercontent.google.com, the
folder listing) and always talks to the real Drive hosts, which it hard-codes; it goes through
requests, so the standard `HTTPS_PROXY` / `REQUESTS_CA_BUNDLE` settings apply to it (that is
also how the tests put a local fake Drive behind it). This module hands gdown a canonical link,
keeps its partial file in a hidden staging folder beside the target (so a rerun resumes), bridges
its progress into our events, turns its failures (quota, permission) into one-line errors, and
never lets an HTML page pass as a model.

gdown >= 6 has `progress=`, `cancel=`, `retries=` and `timeout=`; Colab's 5.2.x has none of them:
each is passed only when the installed gdown's signature has it, and without `progress=` a small
watcher thread reports the growing file's size instead.
"""
from __future__ import annotations

import inspect
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import parse_qs, urlsplit

from ..errors import AuthError, DownloadCancelled, DownloadError, ErrorPageError, InputError
from ..events import Completed, Info, Listener, Meter, guard
from ..http import expects_binary, looks_like_page
from ..place import adopt, place_tree
from ..remote import FetchResult, RemoteFile
from ..tokens import TokenStore, redact, redact_url
from ..units import folder_size

log = logging.getLogger("colab_sd.sources.gdrive")

NAME = "gdrive"
HOSTS = ("drive.google.com", "drive.usercontent.google.com", "docs.google.com")
STAGING = ".gdrive-staging"
_ID = r"[-\w]{10,}"

QUOTA = ("Google Drive's download quota for this file is used up (too many users have viewed or downloaded it "
         "recently): try again later (up to 24 h), or copy it into your own Drive and share that copy")
PERMISSION = ("Google Drive will not give this file to a link: its owner must share it as 'Anyone with the link' "
              "(or it was removed); check the link in a private browser window")


@dataclass(frozen=True)
class DriveRef:
    id: str
    folder: bool = False

    @property
    def gdown_url(self) -> str:
        """The canonical link gdown expects (it rewrites every form to these anyway)."""
        if self.folder:
            return f"https://drive.google.com/drive/folders/{self.id}"
        return f"https://drive.google.com/uc?id={self.id}"


def matches(url: str) -> bool:
    host = (urlsplit(url.strip()).hostname or "").lower()
    return host in HOSTS


def parse(url: str) -> DriveRef:
    """Every common Drive link form → DriveRef (pure: no I/O)."""
    parts = urlsplit(url.strip())
    path = parts.path
    query = parse_qs(parts.query)
    m = re.search(rf"/(?:drive/(?:u/\d+/|mobile/)?folders|folderview)/({_ID})", path)
    if m:
        return DriveRef(m.group(1), folder=True)
    if path.rstrip("/").endswith("/folderview") and query.get("id"):
        return DriveRef(query["id"][0], folder=True)
    m = re.search(rf"/file/(?:u/\d+/)?d/({_ID})", path)
    if m:
        return DriveRef(m.group(1))
    ids = query.get("id")
    if ids and re.fullmatch(_ID, ids[0]):
        return DriveRef(ids[0])
    raise InputError(f"cannot find a file id in the Google Drive link {redact_url(url)!r}: use the file's "
                     "'Share → Copy link' (drive.google.com/file/d/ID/view) or a folder link")


def resolve(url: str, tokens: Optional[TokenStore] = None, *, notes: Optional[list] = None) -> RemoteFile:
    ref = parse(url)
    meta = {"source_name": NAME, "gdrive": {"id": ref.id, "folder": ref.folder}, "is_folder": ref.folder}
    return RemoteFile(url=ref.gdown_url, kind=None, meta=meta, fetcher=make_fetcher(ref))


# ---------------------------------------------------------------------------------------------- fetching


def _supported(func: Callable) -> set:
    try:
        return set(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return set()


def explain_error(err: BaseException) -> Exception:
    """A gdown failure → one of ours."""
    text = str(err)
    lowered = text.lower()
    if "too many users" in lowered or "quota" in lowered:
        return DownloadError(QUOTA)
    if ("permission" in lowered or "public link" in lowered or "access" in lowered
            or "failed to retrieve" in lowered):
        return AuthError(PERMISSION)
    first = redact(text).strip().splitlines()[0] if text.strip() else type(err).__name__
    return DownloadError(f"Google Drive download failed: {first}; run again to resume")


def _looks_like_page(path: Path) -> bool:
    """An HTML page or JSON error where a model file should be: the byte mover's own test (http), on the file."""
    if not expects_binary(path.name):  # a .json / .yaml / .txt file may legitimately be text
        return False
    with open(path, "rb") as fh:
        return looks_like_page(None, fh.read(2048))



class _Watcher:
    """Progress for gdown calls without a progress callback: the staging folder's size, twice a second."""

    def __init__(self, folder: Path, emit: Listener, job: str):
        self._folder, self._emit, self._job = folder, emit, job
        self._stop = threading.Event()
        self._meter = Meter()
        self._thread = threading.Thread(target=self._run, daemon=True, name="colab_sd-gdrive-progress")

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self._emit(self._meter.progress(folder_size(self._folder), None, job=self._job))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=2)


def make_fetcher(ref: DriveRef):
    def fetch(remote: RemoteFile, dest_dir: Path, *, name=None, on_event=None, cancel=None, options=None,
              job=None) -> FetchResult:
        emit = guard(on_event)
        job = job or remote.shown_url
        dest_dir = Path(dest_dir)
        staging = dest_dir / STAGING / ref.id
        staging.mkdir(parents=True, exist_ok=True)
        try:
            if ref.folder:
                return _fetch_folder(ref, staging, dest_dir, emit, job)
            return _fetch_file(ref, staging, dest_dir, name, emit, job, cancel, options, remote.sha256)
        finally:
            _prune(staging)

    return fetch


def _gdown_call(func: Callable, kwargs: dict):
    import gdown

    try:
        return func(**kwargs)
    except KeyboardInterrupt:
        raise
    except Exception as err:
        if type(err).__name__ == "DownloadCancelled":
            raise DownloadCancelled("cancelled; the partial file is kept and the next run resumes it") from None
        if isinstance(err, DownloadCancelled):
            raise
        if isinstance(err, getattr(gdown.exceptions, "FileURLRetrievalError", ())):
            raise explain_error(err) from None
        if isinstance(err, (OSError, ValueError, RuntimeError)) or type(err).__module__.startswith(("gdown", "requests")):
            raise explain_error(err) from None
        raise


def _fetch_file(ref: DriveRef, staging: Path, dest_dir: Path, name: Optional[str], emit: Listener, job: str,
                cancel: Optional[threading.Event], options, expected_sha: Optional[str]) -> FetchResult:
    import gdown

    params = _supported(gdown.download)
    kwargs = dict(url=ref.gdown_url, output=str(staging) + os.sep, quiet=True, resume=True, use_cookies=False)
    meter = Meter()
    if "progress" in params:
        kwargs["progress"] = lambda done, total: emit(meter.progress(done, total, job=job))
    if "cancel" in params and cancel is not None:
        kwargs["cancel"] = cancel
    if "retries" in params and options is not None:
        kwargs["retries"] = int(getattr(options, "retries", 0) or 0)
    if "timeout" in params and options is not None:
        kwargs["timeout"] = (getattr(options, "connect_timeout", 15.0), getattr(options, "stall_timeout", 30.0))
    emit(Info(f"downloading Google Drive file {ref.id}", job=job))
    if "progress" in params:
        out = _gdown_call(gdown.download, kwargs)
    else:
        with _Watcher(staging, emit, job):
            out = _gdown_call(gdown.download, kwargs)
    if not out or not Path(out).is_file():  # gdown < 5 printed its error and returned None
        raise DownloadError(PERMISSION)
    got = Path(out)
    if "progress" not in params:  # the watcher samples twice a second: always report the end
        emit(meter.progress(got.stat().st_size, got.stat().st_size, job=job))
    if _looks_like_page(got):
        got.unlink(missing_ok=True)
        raise ErrorPageError("Google Drive sent a web page instead of the file (it was not saved): " + PERMISSION)
    from ..names import sanitize, user_name

    final = dest_dir / (user_name(name) if name else sanitize(got.name))
    # The byte mover's one verify-and-place: sha256 checked, the same bytes kept once, another file never replaced.
    return adopt(got, final, expected_sha=expected_sha, expected_size=None, emit=emit, job=job,
                 what=f"{got.name} from Google Drive")


def _fetch_folder(ref: DriveRef, staging: Path, dest_dir: Path, emit: Listener, job: str) -> FetchResult:
    import gdown

    params = _supported(gdown.download_folder)
    kwargs = dict(url=ref.gdown_url, output=str(staging) + os.sep, quiet=True, use_cookies=False)
    if "resume" in params:
        kwargs["resume"] = True
    if "remaining_ok" in params:  # gdown 5: more than 50 files needs this
        kwargs["remaining_ok"] = True
    emit(Info(f"downloading Google Drive folder {ref.id}", job=job))
    with _Watcher(staging, emit, job):
        files = _gdown_call(gdown.download_folder, kwargs)
    if not files:
        raise AuthError(PERMISSION)
    roots = [p for p in staging.iterdir() if p.is_dir()]
    if len(roots) != 1:
        raise DownloadError(f"Google Drive folder {ref.id} came back in an unexpected shape; run again")
    tree = roots[0]
    for path in tree.rglob("*"):
        if path.is_file() and _looks_like_page(path):
            path.unlink()
            raise ErrorPageError(f"Google Drive sent a web page instead of {path.name} (not saved): {PERMISSION}")
    final = place_tree(tree, dest_dir / tree.name, emit, job)  # never replaces a different file
    size = folder_size(final)
    emit(Completed(path=str(final), bytes=size, sha256=None, job=job))
    return FetchResult(final, size, None)


def _prune(staging: Path) -> None:
    """Remove the staging folders once nothing resumable is left in them."""
    for folder in (staging, staging.parent):
        try:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        except OSError:
            pass
