"""A fake Hugging Face Hub that the real huggingface_hub client talks to (via `endpoint=` / HF_ENDPOINT).

It answers what the client asks: `GET /api/models/{repo}[/revision/{rev}]` (siblings, with LFS
sha256 and sizes for `?blobs=true`), and `HEAD|GET /{repo}/resolve/{rev}/{path}`: LFS files
redirect to a CDN path with `X-Linked-Etag` (the sha256), `X-Linked-Size` and `X-Repo-Commit`;
small files answer with their git-blob ETag. Errors carry the Hub's `X-Error-Code` headers: a
gated repo (GatedRepo), a private repo without a valid token (RepoNotFound), a missing revision
(RevisionNotFound) or file (EntryNotFound), and a bad token (401 "Invalid credentials …").
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import unquote

from servers import FakeServer, send, send_json, serve_bytes

TOKEN = "hf_fake-token-for-tests-0123456789"
LFS_EXTENSIONS = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".gguf", ".onnx", ".msgpack")


def _commit(seed: str) -> str:
    return hashlib.sha1(seed.encode()).hexdigest()


def _git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class FakeRepo:
    repo_id: str
    revisions: dict = field(default_factory=dict)  # commit → {path: bytes}
    branches: dict = field(default_factory=dict)  # name → commit
    private: bool = False
    gated: bool = False
    repo_type: str = "model"
    corrupt: set = field(default_factory=set)  # paths whose CDN bytes differ from what the metadata says

    def commit_for(self, revision: Optional[str]) -> Optional[str]:
        rev = revision or "main"
        if rev in self.branches:
            return self.branches[rev]
        return rev if rev in self.revisions else None


class FakeCdn(FakeServer):
    """The signed-URL host LFS files redirect to (another host, as cdn-lfs.hf.co is): no token wanted."""

    label = "hf-cdn"

    def __init__(self, hub: "FakeHub"):
        super().__init__()
        self.hub = hub
        self.auth_seen = 0

    def dispatch(self, h) -> None:
        if h.headers.get("Authorization"):
            self.auth_seen += 1
            return send(h, 400, b"<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed"
                                b"</Message></Error>", "application/xml")
        parts = [unquote(p) for p in h.url_path.split("/") if p]
        if parts[:1] == ["cdn"] and len(parts) >= 2:
            return self.hub._cdn(h, parts[1])
        send(h, 404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")


class FakeHub(FakeServer):
    label = "hf"

    def __init__(self, token: str = TOKEN):
        super().__init__()
        self.token = token
        self.cdn = FakeCdn(self)
        self.repos: dict[tuple[str, str], FakeRepo] = {}
        self.granted: set[str] = {token}  # tokens whose owner accepted the gated repos' licences

    def start(self):
        self.cdn.start()
        return super().start()

    def stop(self):
        super().stop()
        self.cdn.stop()

    def add_repo(self, repo_id: str, files: dict, *, revision: str = "main", repo_type: str = "model",
                 private: bool = False, gated: bool = False) -> FakeRepo:
        """Add (or extend with another revision) a repo; returns it. `files` is {path: bytes}."""
        repo = self.repos.setdefault((repo_type, repo_id), FakeRepo(repo_id, repo_type=repo_type))
        repo.private, repo.gated = repo.private or private, repo.gated or gated
        commit = _commit(f"{repo_id}@{revision}")
        repo.revisions[commit] = dict(files)
        repo.branches[revision] = commit
        return repo

    # -- access --------------------------------------------------------------------------------

    def _access(self, h, repo: Optional[FakeRepo], *, file_access: bool) -> Optional[tuple]:
        """None when allowed; else (status, X-Error-Code, message)."""
        header = h.headers.get("Authorization")
        token = header[7:] if header and header.startswith("Bearer ") else None
        if header and token != self.token:
            return 401, None, "Invalid credentials in Authorization header"
        if repo is None or (repo.private and token is None):
            return (401 if token is None else 404), "RepoNotFound", "Repository not found"
        if repo.gated and file_access and token not in self.granted:
            return (401 if token is None else 403), "GatedRepo", "Access to model is restricted"
        return None

    @staticmethod
    def _error(h, status: int, code: Optional[str], message: str) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        send_json(h, status, {"error": message}, headers)

    # -- routes -----------------------------------------------------------------------------------

    def dispatch(self, h) -> None:
        parts = [unquote(p) for p in h.url_path.split("/") if p]
        if parts[:1] == ["api"] and len(parts) >= 4 and parts[1] in ("models", "datasets"):
            repo_type = "model" if parts[1] == "models" else "dataset"
            repo_id = "/".join(parts[2:4])
            revision = parts[5] if len(parts) >= 6 and parts[4] == "revision" else None
            return self._info(h, repo_type, repo_id, revision)
        repo_type = "model"
        if parts[:1] in (["datasets"], ["spaces"]):
            repo_type, parts = parts[0][:-1], parts[1:]
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(h, repo_type, "/".join(parts[:2]), parts[3], "/".join(parts[4:]))
        send(h, 404, b"<html><title>404</title></html>", "text/html")

    def _info(self, h, repo_type: str, repo_id: str, revision: Optional[str]) -> None:
        repo = self.repos.get((repo_type, repo_id))
        denied = self._access(h, repo, file_access=False)
        if denied:
            return self._error(h, *denied)
        commit = repo.commit_for(revision)
        if commit is None:
            return self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {revision}")
        files = repo.revisions[commit]
        siblings = []
        for path, data in files.items():
            entry = {"rfilename": path}
            if h.query.get("blobs") in ("True", "true", "1"):
                entry["size"] = len(data)
                entry["blobId"] = _git_blob_sha(data)
                if path.endswith(LFS_EXTENSIONS):
                    entry["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                                    "pointerSize": 134}
            siblings.append(entry)
        send_json(h, 200, {"_id": commit[:24], "id": repo_id, "modelId": repo_id, "sha": commit,
                           "private": repo.private, "gated": "auto" if repo.gated else False, "disabled": False,
                           "downloads": 0, "likes": 0, "tags": ["diffusers"], "siblings": siblings})

    def _resolve(self, h, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        repo = self.repos.get((repo_type, repo_id))
        denied = self._access(h, repo, file_access=True)
        if denied:
            return self._error(h, *denied)
        commit = repo.commit_for(revision)
        if commit is None:
            return self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {revision}")
        data = repo.revisions[commit].get(path)
        if data is None:
            return self._error(h, 404, "EntryNotFound", f"{path} does not exist on {revision}")
        headers = {"X-Repo-Commit": commit}
        if path.endswith(LFS_EXTENSIONS):
            sha = hashlib.sha256(data).hexdigest()
            key = f"{repo_type}--{repo_id.replace('/', '--')}--{commit}--{path.replace('/', '--')}"
            headers.update({"X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data)), "ETag": f'"{sha}"',
                            "Location": f"{self.cdn.base}/cdn/{key}?X-Amz-Signature=fake"})
            return send(h, 302, b"", "text/plain", headers)
        etag = f'"{_git_blob_sha(data)}"'
        serve_bytes(h, data, etag=etag, headers=headers, ctype="application/json" if path.endswith(".json")
                    else "text/plain")

    def _cdn(self, h, key: str) -> None:
        repo_type, rest = key.split("--", 1)
        for (rtype, repo_id), repo in self.repos.items():
            prefix = f"{repo_id.replace('/', '--')}--"
            if rtype != repo_type or not rest.startswith(prefix):
                continue
            commit, _, flat = rest[len(prefix):].partition("--")
            for path, data in repo.revisions.get(commit, {}).items():
                if path.replace("/", "--") == flat:
                    body = data[:-1] + bytes([data[-1] ^ 0xFF]) if path in repo.corrupt else data
                    return serve_bytes(h, body, etag=f'"{hashlib.sha256(data).hexdigest()}"')
        send(h, 404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
