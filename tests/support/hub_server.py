"""A small Hugging Face Hub stand-in on 127.0.0.1, for testing the real huggingface_hub client offline.

It implements just what ``create_repo``, ``upload_folder`` / ``create_commit``, ``repo_info``,
``list_repo_files`` and ``hf_hub_download`` (and so ``hf download``) call, as checked against
huggingface_hub 2.4.0:

    POST /api/repos/create                           -> {"url"}; 409 when it exists
    POST /api/validate-yaml                          -> {}; 400 with the errors of a bad card header
    POST /api/{type}s/{ns}/{name}/preupload/{rev}    -> "lfs" or "regular" per file, as the Hub decides
    POST /{type}s/{ns}/{name}.git/info/lfs/objects/batch   LFS batch API: upload + verify actions
    PUT  /lfs-upload/{oid}/{ticket}                  the upload (a presigned-URL stand-in: no token)
    POST /{type}s/{ns}/{name}.git/info/lfs/objects/verify  -> 200 once the object is stored intact
    POST /api/{type}s/{ns}/{name}/commit/{rev}       NDJSON header, base64 files, lfsFile pointers
    POST /api/{type}s/{ns}/{name}/branch/{branch}    new branch from main (or startingPoint); 409 when it exists
    GET  /api/{type}s/{ns}/{name}[/revision/{rev}]   -> {"id", "sha", "siblings"}
    GET  /api/{type}s/{ns}/{name}/tree/{rev}         -> the files (for ``delete_patterns``)
    GET  /api/whoami-v2                              -> a user named "tester"
    HEAD/GET /[{type}s/]{ns}/{name}/resolve/{rev}/{path}  with X-Repo-Commit, ETag, exact Content-Length

Uploads follow the Hub's rules: a file is "lfs" when the repo's .gitattributes routes it to LFS
(``*.safetensors`` and friends), when it is binary (a NUL byte in the sample the client sends)
or 10 MiB and more; a commit that sends such a file inline, or points at an LFS object that was
not uploaded and verified, is refused. (The Hub offers Xet first; clients run with
``HF_HUB_DISABLE_XET=1`` here, so the LFS protocol is what runs.)

Missing things answer 404 with the X-Error-Code the client maps to its typed errors
(RepoNotFound, RevisionNotFound, EntryNotFound). Writes need an ``Authorization: Bearer``
header, like the Hub. Everything is kept in memory; ``requests`` records each request so tests
can check what the client sent (that config.json was asked for, that the token never lands in a
file); ``commit_ops`` records how each committed file travelled ("file" inline or "lfsFile").
A request to any unknown path (say ``/_marker/NAME``) is logged too: a client can mark where
one of its steps begins.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import yaml

REPO_TYPES = ("model", "dataset", "space")
# A part of the .gitattributes the Hub writes into every new repo.
_GITATTRIBUTES = b"".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n".encode()
    for pattern in ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.npz", "*.zip", "*.tar.*")
)
XET_REFUSAL = "this stand-in Hub speaks LFS, not Xet: run the client with HF_HUB_DISABLE_XET=1"
LFS_SIZE_THRESHOLD = 10 * 2**20  # the Hub sends files from 10 MiB up to LFS whatever their type


def lfs_patterns(gitattributes: bytes) -> list[str]:
    """The patterns a .gitattributes routes to LFS."""
    return [line.split()[0] for line in gitattributes.decode().splitlines() if "filter=lfs" in line.split()[1:]]


def needs_lfs(path: str, size: int, head: bytes, gitattributes: bytes) -> bool:
    """Whether the Hub stores a file through LFS: by .gitattributes, by size, or because it is binary."""
    name = path.rsplit("/", 1)[-1]
    routed = any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(name, p) for p in lfs_patterns(gitattributes))
    return routed or size >= LFS_SIZE_THRESHOLD or b"\0" in head


@dataclass
class Commit:
    oid: str
    files: dict[str, bytes]
    message: str


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    sdk: str | None
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        revision = unquote(revision)
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        return self.commits.get(revision)


class FakeHub:
    """The state of the stand-in Hub: repos, commits, branches; safe to read from tests."""

    def __init__(self):
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.validated: list[tuple[str, list[str]]] = []  # (repo type, errors) per README check
        self.lfs_objects: dict[str, bytes] = {}  # sha256 -> content, once uploaded
        self.lfs_verified: set[str] = set()
        self.lfs_tickets: dict[str, str] = {}  # upload ticket -> the oid it may upload
        self.commit_ops: list[tuple[str, str, str]] = []  # (repo id, path, "file" | "lfsFile") per committed file
        self.lock = threading.Lock()
        self._counter = 0

    def new_oid(self, seed: str) -> str:
        self._counter += 1
        return hashlib.sha1(f"{self._counter}:{seed}".encode()).hexdigest()

    def create(self, repo_type: str, repo_id: str, private: bool, sdk: str | None) -> bool:
        """False when the repo exists already."""
        with self.lock:
            key = (repo_type, repo_id)
            if key in self.repos:
                return False
            repo = Repo(repo_type, repo_id, private, sdk)
            oid = self.new_oid(repo_id)
            repo.commits[oid] = Commit(oid, {".gitattributes": _GITATTRIBUTES}, "initial commit")
            repo.branches["main"] = oid
            self.repos[key] = repo
            return True

    def commit(self, repo: Repo, branch: str, lines: list[dict]) -> Commit:
        with self.lock:
            parent = repo.resolve(branch)
            files = dict(parent.files) if parent else {}
            message = ""
            for line in lines:
                key, value = line["key"], line["value"]
                if key == "header":
                    message = value.get("summary", "")
                elif key == "file":
                    if value.get("encoding") != "base64":
                        raise ValueError(f"unsupported file encoding {value.get('encoding')!r}")
                    data = base64.b64decode(value["content"])
                    if needs_lfs(value["path"], len(data), data[:512], files.get(".gitattributes", b"")):
                        raise ValueError(f"{value['path']} is a binary or LFS file and must be uploaded through LFS")
                    files[value["path"]] = data
                    self.commit_ops.append((repo.repo_id, value["path"], key))
                elif key == "lfsFile":
                    oid = value["oid"]
                    if oid not in self.lfs_verified or len(self.lfs_objects[oid]) != value.get("size"):
                        raise ValueError(f"LFS object {oid} for {value['path']} was not uploaded and verified")
                    files[value["path"]] = self.lfs_objects[oid]
                    self.commit_ops.append((repo.repo_id, value["path"], key))
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {p: b for p, b in files.items() if not p.startswith(prefix)}
                else:
                    raise ValueError(f"unsupported commit operation {key!r}")
            oid = self.new_oid(repo.repo_id + message)
            repo.commits[oid] = Commit(oid, files, message)
            repo.branches[unquote(branch)] = oid
            return repo.commits[oid]

    def all_file_bytes(self) -> list[bytes]:
        return [data for repo in self.repos.values() for c in repo.commits.values() for data in c.files.values()]


# A subset of the Hub's checks on a README's YAML header: the ones a card we render could break.
# Pipeline tags: part of the Hub's task list (huggingface.js tasks), the image ones among them.
PIPELINE_TAGS = {
    "image-to-image",
    "image-classification",
    "image-feature-extraction",
    "image-segmentation",
    "feature-extraction",
    "text-to-image",
    "object-detection",
    "depth-estimation",
    "other",
}
SPACE_SDKS = {"gradio", "docker", "static", "streamlit"}


def _model_index_errors(index) -> list[str]:
    """The Hub's shape rules for ``model-index``: named entries whose results carry task, dataset and metrics."""
    if not isinstance(index, list) or not index:
        return ['"model-index" must be a non-empty list']
    errors = []
    for entry in index:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            errors.append('"model-index" entries need a "name"')
            continue
        for result in entry.get("results") or []:
            task, dataset, metrics = result.get("task"), result.get("dataset"), result.get("metrics")
            if not (isinstance(task, dict) and isinstance(task.get("type"), str)):
                errors.append('"model-index" results need task.type')
            if not (isinstance(dataset, dict) and all(isinstance(dataset.get(k), str) for k in ("type", "name"))):
                errors.append('"model-index" results need dataset.type and dataset.name')
            if not (
                isinstance(metrics, list)
                and metrics
                and all(isinstance(m, dict) and isinstance(m.get("type"), str) and "value" in m for m in metrics)
            ):
                errors.append('"model-index" results need metrics with type and value')
    return errors


def validate_card_yaml(content: str, repo_type: str) -> list[str]:
    """Errors in a README's YAML header, as the Hub's validate-yaml endpoint would report them."""
    if not content.startswith("---\n"):
        return []  # no header: the Hub accepts it (with a warning)
    header_text, sep, _ = content[4:].partition("\n---")
    if not sep:
        return ["YAML header is not closed by '---'"]
    try:
        header = yaml.safe_load(header_text) or {}
    except yaml.YAMLError as exc:
        return [f"YAML does not parse: {exc}"]
    if not isinstance(header, dict):
        return ["YAML header must be a mapping"]
    errors = []
    for key in ("license", "library_name", "pipeline_tag", "title", "sdk", "app_file"):
        if key in header and not isinstance(header[key], str):
            errors.append(f'"{key}" must be a string')
    if "tags" in header and not (isinstance(header["tags"], list) and all(isinstance(t, str) for t in header["tags"])):
        errors.append('"tags" must be a list of strings')
    if repo_type == "model" and "pipeline_tag" in header and header["pipeline_tag"] not in PIPELINE_TAGS:
        errors.append(f'"pipeline_tag" {header["pipeline_tag"]!r} is not a known task')
    if "base_model" in header:
        bases = header["base_model"] if isinstance(header["base_model"], list) else [header["base_model"]]
        if not all(isinstance(b, str) and len(b.split("/")) == 2 and all(b.split("/")) for b in bases):
            errors.append('"base_model" must be a model id OWNER/NAME or a list of them')
    if "model-index" in header:
        errors.extend(_model_index_errors(header["model-index"]))
    if repo_type == "space" and header.get("sdk") not in SPACE_SDKS:
        errors.append(f'"sdk" must be one of {sorted(SPACE_SDKS)}')
    return errors


def _url_prefix(repo_type: str) -> str:
    return "" if repo_type == "model" else f"{repo_type}s/"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # the client keeps connections alive
    hub: FakeHub
    endpoint: str

    def log_message(self, format, *args):  # keep pytest output clean
        pass

    # -- plumbing ---------------------------------------------------------------------------

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while (size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)) > 0:
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()  # the blank line after the last chunk
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head_only=False):
        self.send_response(status)
        headers = {"Content-Type": "application/json", **(headers or {})}
        for k, v in headers.items():
            self.send_header(k, v)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head_only and body:
            self.wfile.write(body)

    def _json(self, status: int, data: dict, headers: dict[str, str] | None = None):
        self._send(status, json.dumps(data).encode(), headers)

    def _error(self, status: int, code: str | None, message: str, head_only=False):
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, json.dumps({"error": message}).encode(), headers, head_only)

    def _authorized(self) -> bool:
        return self.headers.get("Authorization", "").startswith("Bearer ")

    def _repo(self, repo_type: str, repo_id: str) -> Repo | None:
        return self.hub.repos.get((repo_type, repo_id))

    # -- routes ------------------------------------------------------------------------------

    def do_POST(self):
        path = urlsplit(self.path).path
        self.hub.requests.append(("POST", path))
        body = self._body()
        parts = path.strip("/").split("/")
        if not self._authorized() and path != "/api/validate-yaml":
            return self._error(401, None, "Invalid credentials in Authorization header")
        if path == "/api/repos/create":
            payload = json.loads(body)
            repo_type = payload.get("type") or "model"
            repo_id = f"{payload.get('organization') or 'tester'}/{payload['name']}"
            created = self.hub.create(repo_type, repo_id, bool(payload.get("private")), payload.get("sdk"))
            url = f"{self.endpoint}/{_url_prefix(repo_type)}{repo_id}"
            return self._json(200 if created else 409, {"url": url, "name": repo_id})
        if path.endswith(".git/info/lfs/objects/batch"):
            return self._lfs_batch(path.removesuffix(".git/info/lfs/objects/batch"), json.loads(body))
        if path.endswith(".git/info/lfs/objects/verify"):
            payload = json.loads(body)
            data = self.hub.lfs_objects.get(payload.get("oid"))
            if data is None or len(data) != payload.get("size"):
                return self._error(404, None, f"LFS object {payload.get('oid')} not found")
            self.hub.lfs_verified.add(payload["oid"])
            return self._json(200, {})
        if path == "/api/validate-yaml":
            payload = json.loads(body)
            errors = validate_card_yaml(payload.get("content", ""), payload.get("repoType", "model"))
            self.hub.validated.append((payload.get("repoType", "model"), errors))
            return self._json(400 if errors else 200, {"errors": [{"message": e} for e in errors]} if errors else {})
        if len(parts) >= 6 and parts[0] == "api" and parts[1].rstrip("s") in REPO_TYPES:
            repo_type, repo_id, action, revision = (
                parts[1][:-1],
                f"{parts[2]}/{parts[3]}",
                parts[4],
                "/".join(parts[5:]),
            )
            repo = self._repo(repo_type, repo_id)
            if repo is None:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            if action == "preupload":
                head = repo.resolve(revision)
                attributes = head.files.get(".gitattributes", b"") if head else _GITATTRIBUTES
                modes = [
                    (f["path"], needs_lfs(f["path"], f["size"], base64.b64decode(f.get("sample", "")), attributes))
                    for f in json.loads(body)["files"]
                ]
                return self._json(
                    200,
                    {
                        "files": [
                            {"path": p, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False}
                            for p, lfs in modes
                        ]
                    },
                )
            if action == "branch":
                start = json.loads(body or b"{}").get("startingPoint") or "main"
                with self.hub.lock:
                    if unquote(revision) in repo.branches:
                        return self._error(409, None, f"branch {unquote(revision)} already exists")
                    commit = repo.resolve(start)
                    if commit is None:
                        return self._error(404, "RevisionNotFound", f"Invalid rev id: {start}")
                    repo.branches[unquote(revision)] = commit.oid
                return self._json(200, {})
            if action == "commit":
                lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                try:
                    commit = self.hub.commit(repo, revision, lines)
                except (ValueError, KeyError) as exc:
                    return self._error(400, None, f"bad commit: {exc}")
                url = f"{self.endpoint}/{_url_prefix(repo_type)}{repo_id}/commit/{commit.oid}"
                return self._json(200, {"commitOid": commit.oid, "commitUrl": url, "success": True})
        return self._error(404, None, f"no route for POST {path}")

    def _lfs_batch(self, repo_path: str, payload: dict):
        parts = repo_path.strip("/").split("/")
        repo_type = "model"
        if parts[0] in ("spaces", "datasets"):
            repo_type, parts = parts[0][:-1], parts[1:]
        if self._repo(repo_type, "/".join(parts)) is None:
            return self._error(404, "RepoNotFound", f"Repository {'/'.join(parts)} not found")
        if payload.get("operation") != "upload" or "basic" not in payload.get("transfers", ["basic"]):
            return self._error(400, None, "only basic uploads are served here")
        objects = []
        for obj in payload["objects"]:
            oid, size = obj["oid"], obj["size"]
            answer = {"oid": oid, "size": size, "authenticated": True}
            if oid not in self.hub.lfs_verified:  # the Hub skips objects it already holds
                ticket = secrets.token_hex(8)
                self.hub.lfs_tickets[ticket] = oid
                answer["actions"] = {
                    "upload": {"href": f"{self.endpoint}/lfs-upload/{oid}/{ticket}", "header": {}},
                    "verify": {"href": f"{self.endpoint}{repo_path}.git/info/lfs/objects/verify", "header": {}},
                }
            objects.append(answer)
        return self._send(
            200,
            json.dumps({"transfer": "basic", "objects": objects}).encode(),
            {"Content-Type": "application/vnd.git-lfs+json"},
        )

    def do_PUT(self):
        path = urlsplit(self.path).path
        self.hub.requests.append(("PUT", path))
        body = self._body()
        parts = path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "lfs-upload" or self.hub.lfs_tickets.get(parts[2]) != parts[1]:
            return self._error(403, None, "bad or expired upload URL")
        if hashlib.sha256(body).hexdigest() != parts[1]:
            return self._error(400, None, "uploaded bytes do not match the object's sha256")
        self.hub.lfs_objects[parts[1]] = body
        del self.hub.lfs_tickets[parts[2]]
        return self._send(200, b"", {"ETag": f'"{parts[1]}"'})

    def do_GET(self):
        self._get(head_only=False)

    def do_HEAD(self):
        self._get(head_only=True)

    def _get(self, head_only: bool):
        path = urlsplit(self.path).path
        self.hub.requests.append(("HEAD" if head_only else "GET", path))
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if path == "/api/whoami-v2":
            if not self._authorized():
                return self._error(401, None, "Invalid credentials in Authorization header")
            return self._json(200, {"type": "user", "name": "tester", "orgs": [], "auth": {"type": "access_token"}})
        if any(part.startswith("xet-") for part in parts):  # xet-write-token, xet-read-token
            # Not a 5xx: the client would retry it. A clear refusal instead of a hang or a puzzle.
            return self._error(400, None, XET_REFUSAL, head_only)
        if len(parts) >= 6 and parts[0] == "api" and parts[1].rstrip("s") in REPO_TYPES and parts[4] == "tree":
            return self._tree(parts[1][:-1], f"{parts[2]}/{parts[3]}", parts[5], "/".join(parts[6:]))
        if len(parts) >= 4 and parts[0] == "api" and parts[1].rstrip("s") in REPO_TYPES:
            return self._repo_info(
                parts[1][:-1],
                f"{parts[2]}/{parts[3]}",
                parts[5] if len(parts) >= 6 and parts[4] == "revision" else "main",
            )
        repo_type = "model"
        if parts and parts[0] in ("spaces", "datasets"):
            repo_type, parts = parts[0][:-1], parts[1:]
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(repo_type, f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]), head_only)
        return self._error(404, None, f"no route for GET {path}", head_only)

    def _commit(
        self, repo_type: str, repo_id: str, revision: str, head_only: bool = False
    ) -> tuple[Repo, Commit] | None:
        """The repo and the commit a revision names, or None after answering 404 as the Hub does."""
        repo = self._repo(repo_type, repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", f"Repository {repo_id} not found", head_only)
            return None
        commit = repo.resolve(revision)
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head_only)
            return None
        return repo, commit

    def _repo_info(self, repo_type: str, repo_id: str, revision: str):
        if (found := self._commit(repo_type, repo_id, revision)) is None:
            return
        repo, commit = found
        info = {
            "id": repo_id,
            "sha": commit.oid,
            "private": repo.private,
            "siblings": [{"rfilename": p} for p in sorted(commit.files)],
        }
        if repo.sdk:
            info["sdk"] = repo.sdk
        return self._json(200, info)

    def _tree(self, repo_type: str, repo_id: str, revision: str, folder: str):
        if (found := self._commit(repo_type, repo_id, revision)) is None:
            return
        _, commit = found
        prefix = folder.rstrip("/") + "/" if folder else ""
        entries = [
            {"type": "file", "path": p, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
            for p, data in sorted(commit.files.items())
            if p.startswith(prefix)
        ]
        return self._json(200, entries)  # one page: no Link header

    def _resolve(self, repo_type: str, repo_id: str, revision: str, filename: str, head_only: bool):
        if (found := self._commit(repo_type, repo_id, revision, head_only)) is None:
            return
        _, commit = found
        if filename not in commit.files:
            return self._error(404, "EntryNotFound", f"{filename} does not exist at {revision}", head_only)
        data = commit.files[filename]
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{hashlib.sha1(data).hexdigest()}"',
            "Accept-Ranges": "bytes",
        }
        if needs_lfs(filename, len(data), data[:512], commit.files.get(".gitattributes", b"")):
            # As the Hub answers for an LFS file: the etag is the content's sha256.
            headers["X-Linked-Etag"] = f'"{hashlib.sha256(data).hexdigest()}"'
            headers["X-Linked-Size"] = str(len(data))
        status, body = 200, data
        range_header = self.headers.get("Range", "")
        if range_header.startswith("bytes=") and "," not in range_header:
            start_s, _, end_s = range_header[6:].partition("-")
            start = int(start_s or 0)
            end = int(end_s) if end_s else len(data) - 1
            body = data[start : end + 1]
            status = 206
            headers["Content-Range"] = f"bytes {start}-{start + len(body) - 1}/{len(data)}"
        headers["Content-Length"] = str(len(body))
        self._send(status, body, headers, head_only)


class HubServer:
    """Runs a FakeHub on 127.0.0.1 in a background thread; use as a context manager.

    >>> with HubServer() as server:      # doctest: +SKIP
    ...     os.environ["HF_ENDPOINT"] = server.endpoint
    """

    def __init__(self):
        self.hub = FakeHub()
        handler = type("Handler", (_Handler,), {"hub": self.hub})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        handler.endpoint = self.endpoint
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="fake-hub", daemon=True)

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
