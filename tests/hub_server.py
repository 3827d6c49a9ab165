"""A small Hugging Face Hub-compatible HTTP server on 127.0.0.1, for testing push and pull offline.

The real clients (``huggingface_hub.HfApi``, ``datasets.load_dataset``, ``peft``, ``transformers``,
``snapshot_download``) talk to it unpatched when ``HF_ENDPOINT`` points here and ``HF_HUB_DISABLE_XET=1``.
It keeps real commit snapshots: every commit gets a new 40-hex id that records its parent and the
full file list, so a pinned revision keeps returning the files of that commit after later pushes.
Routes it does not implement answer 501 and are recorded in ``HubServer.unimplemented``, so
client drift fails loudly instead of silently. See ``shared/design/HUB_TEST_SERVER.md``.

Standard library only. Standalone::

    python tests/hub_server.py --port 8999 --root /tmp/hub [--token hf_xxx:alice ...]

Without ``--token`` any non-empty bearer token is accepted as user ``user`` who may write to every
namespace (handy for a manual run); with tokens, each token is one user who writes to its own
namespace and to the ``--org``s it is given.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".parquet", ".safetensors", ".bin", ".arrow", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx",
                ".gguf", ".npy", ".npz", ".pkl", ".zip", ".gz", ".tar", ".zst", ".model", ".tflite")
LFS_MIN_SIZE = 10 * 1024 * 1024  # the Hub stores larger files through LFS whatever their name
GITATTRIBUTES = "".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in LFS_SUFFIXES).encode()
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


class HubError(Exception):
    """An error response: status, message, and the X-Error-Code the clients branch on."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class HubStore:
    """Repositories, commits and a content-addressed object store, persisted under ``root``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.objects = self.root / "objects"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.state_path = self.root / "state.json"
        self.lock = threading.RLock()
        self.repos: dict[str, dict] = json.loads(self.state_path.read_text()) if self.state_path.is_file() else {}

    # -- objects
    def object_path(self, sha256: str) -> Path:
        return self.objects / sha256

    def has_object(self, sha256: str) -> bool:
        return self.object_path(sha256).is_file()

    def put_object(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        path = self.object_path(sha256)
        if not path.is_file():
            tmp = path.with_name(f".{sha256}.{uuid.uuid4().hex}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return sha256

    def save(self) -> None:
        tmp = self.state_path.with_name(f".state.{uuid.uuid4().hex}")
        tmp.write_text(json.dumps(self.repos))
        os.replace(tmp, self.state_path)

    # -- repositories
    @staticmethod
    def key(repo_type: str, repo_id: str) -> str:
        return f"{repo_type}s/{repo_id}"

    def get_repo(self, repo_type: str, repo_id: str) -> dict:
        repo = self.repos.get(self.key(repo_type, repo_id))
        if repo is None:
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    def create_repo(self, repo_type: str, repo_id: str, private: bool, owner: str) -> dict:
        key = self.key(repo_type, repo_id)
        if key in self.repos:
            raise HubError(409, "You already created this repo")
        repo = {"id": repo_id, "type": repo_type, "private": private, "owner": owner, "createdAt": _now(),
                "refs": {}, "commits": {}}
        entry = {"sha256": self.put_object(GITATTRIBUTES), "size": len(GITATTRIBUTES), "lfs": False}
        self.repos[key] = repo
        self._add_commit(repo, None, "main", "initial commit", "", {".gitattributes": entry}, "system")
        self.save()
        return repo

    def _add_commit(self, repo: dict, parent: str | None, branch: str, title: str, message: str,
                    files: dict, author: str) -> str:
        seed = json.dumps([repo["id"], parent, title, message, files, uuid.uuid4().hex, time.time()], sort_keys=True)
        sha = hashlib.sha1(seed.encode()).hexdigest()
        repo["commits"][sha] = {"parent": parent, "title": title, "message": message, "date": _now(),
                                "author": author, "files": files}
        repo["refs"][branch] = sha
        return sha

    def resolve(self, repo: dict, revision: str) -> str:
        """A branch name or a full commit id -> the commit id."""
        if revision in repo["refs"]:
            return repo["refs"][revision]
        if revision.startswith("refs/heads/") and revision[len("refs/heads/"):] in repo["refs"]:
            return repo["refs"][revision[len("refs/heads/"):]]
        if COMMIT_RE.match(revision) and revision in repo["commits"]:
            return revision
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def files_at(self, repo: dict, sha: str) -> dict:
        return repo["commits"][sha]["files"]

    def commit(self, repo: dict, revision: str, header: dict, operations: list[tuple[str, dict]], author: str) -> str:
        if revision not in repo["refs"]:
            if COMMIT_RE.match(revision) and revision in repo["commits"]:
                raise HubError(400, f"Cannot commit to a commit id ({revision}); commit to a branch")
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        head = repo["refs"][revision]
        parent = header.get("parentCommit")
        if parent and not head.startswith(parent):
            raise HubError(412, f"A commit has happened since. Parent {parent} is not the head of {revision} ({head})")
        files = dict(self.files_at(repo, head))
        for key, value in operations:
            path = value.get("path", "").lstrip("/")
            if not path or ".." in path.split("/"):
                raise HubError(400, f"Invalid path {path!r}")
            if key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise HubError(400, f"Unsupported encoding {value.get('encoding')!r}")
                data = base64.b64decode(value["content"])
                files[path] = {"sha256": self.put_object(data), "size": len(data), "lfs": False}
            elif key == "lfsFile":
                oid = value.get("oid", "")
                if value.get("algo", "sha256") != "sha256" or not self.has_object(oid):
                    raise HubError(422, f"LFS object {oid} for {path} was not uploaded")
                size = self.object_path(oid).stat().st_size
                if "size" in value and int(value["size"]) != size:
                    raise HubError(422, f"LFS object {oid} has {size} bytes, the commit says {value['size']}")
                files[path] = {"sha256": oid, "size": size, "lfs": True}
            elif key == "deletedFile":
                if path not in files:
                    raise HubError(404, f"File {path} not found", "EntryNotFound")
                del files[path]
            elif key == "deletedFolder":
                prefix = path.rstrip("/") + "/"
                doomed = [p for p in files if p.startswith(prefix)]
                if not doomed:
                    raise HubError(404, f"Folder {path} not found", "EntryNotFound")
                for p in doomed:
                    del files[p]
            else:
                raise HubError(400, f"Unknown commit operation {key!r}")
        sha = self._add_commit(repo, head, revision, header.get("summary") or "", header.get("description") or "",
                               files, author)
        self.save()
        return sha


def _entry_info(store: HubStore, path: str, entry: dict, last_commit: dict | None = None) -> dict:
    if entry["lfs"]:
        pointer = lfs_pointer(entry["sha256"], entry["size"])
        info = {"type": "file", "oid": git_blob_sha1(pointer), "size": entry["size"], "path": path,
                "lfs": {"oid": entry["sha256"], "size": entry["size"], "pointerSize": len(pointer)}}
    else:
        info = {"type": "file", "oid": git_blob_sha1(store.object_path(entry["sha256"]).read_bytes()),
                "size": entry["size"], "path": path}
    if last_commit:
        info["lastCommit"] = last_commit
    return info


def _dir_info(path: str, files: dict, last_commit: dict | None = None) -> dict:
    prefix = path + "/"
    listing = sorted((p, e["sha256"]) for p, e in files.items() if p.startswith(prefix))
    info = {"type": "directory", "oid": hashlib.sha1(json.dumps(listing).encode()).hexdigest(), "size": 0,
            "path": path}
    if last_commit:
        info["lastCommit"] = last_commit
    return info


def _is_true(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


class HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "cbt-llm-test-hub/1"
    timeout = 120  # an idle keep-alive connection is dropped after this

    # -- plumbing
    @property
    def hub(self) -> "HubServer":
        return self.server.hub  # type: ignore[attr-defined]

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        self.hub.log(f"{self.address_string()} {format % args}")

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json",
              headers: dict | None = None, head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _json(self, status: int, payload, headers: dict | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers=headers, head=self.command == "HEAD")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.query = parse_qs(url.query, keep_blank_values=True)
        segments = [unquote(s) for s in url.path.split("/")[1:]]
        body = self._body()  # always read, so a body on any method never corrupts the keep-alive stream
        try:
            handled = self._route(method, segments, body)
            if handled is False:
                self.hub.record_unimplemented(method, self.path)
                self._json(501, {"error": f"{method} {url.path} is not implemented by the test Hub server"})
        except HubError as err:
            headers = dict(err.headers)
            if err.code:
                headers["X-Error-Code"] = err.code
            headers["X-Error-Message"] = err.message
            self._json(err.status, {"error": err.message}, headers)
        except Exception as err:  # a server bug: answer 500 and keep serving
            self.hub.log(f"500 on {method} {self.path}: {type(err).__name__}: {err}")
            self._json(500, {"error": f"{type(err).__name__}: {err}"})

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    # -- auth
    def _user(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if not auth:
            return None
        token = auth.split(" ", 1)[1].strip() if auth.lower().startswith("bearer ") else ""
        user = self.hub.user_for(token)
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return user

    def _require_user(self) -> str:
        user = self._user()
        if user is None:
            raise HubError(401, "You must be authenticated to do this")
        return user

    def _readable(self, repo_type: str, repo_id: str) -> dict:
        repo = self.hub.store.get_repo(repo_type, repo_id)
        if repo["private"] and not self.hub.can_write(self._user(), repo_id.split("/")[0]):
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    def _writable(self, repo_type: str, repo_id: str) -> tuple[dict, str]:
        user = self._require_user()
        repo = self._readable(repo_type, repo_id)
        if not self.hub.can_write(user, repo_id.split("/")[0]):
            raise HubError(403, f"You don't have the rights to write to {repo_id}")
        return repo, user

    # -- routes
    def _route(self, method: str, seg: list[str], body: bytes):
        store = self.hub.store
        if seg[:1] == ["api"]:
            if seg[1:] == ["whoami-v2"] and method == "GET":
                user = self._require_user()
                orgs = [{"name": o, "type": "org"} for o in sorted(self.hub.orgs_of(user))]
                return self._json(200, {"type": "user", "id": user, "name": user, "fullname": user, "orgs": orgs,
                                        "auth": {"type": "access_token",
                                                 "accessToken": {"displayName": "test", "role": "write"}}})
            if seg[1:2] == ["telemetry"]:  # library telemetry pings (e.g. trl's), accepted and dropped
                return self._send(200, b"", head=method == "HEAD")
            if seg[1:] == ["agent-harnesses"] and method == "GET":  # the client's user-agent registry
                return self._json(200, {"standardEnvVars": [], "harnesses": {}})
            if seg[1:] == ["validate-yaml"] and method == "POST":
                return self._validate_yaml(json.loads(body or b"{}"))
            if seg[1:] == ["repos", "create"] and method == "POST":
                return self._create_repo(json.loads(body or b"{}"))
            if seg[1:] == ["repos", "delete"] and method in ("DELETE", "POST"):
                payload = json.loads(body or b"{}")
                repo_type = payload.get("type") or "model"
                repo_id = "/".join(filter(None, [payload.get("organization"), payload.get("name")]))
                self._writable(repo_type, repo_id)
                with store.lock:
                    del store.repos[store.key(repo_type, repo_id)]
                    store.save()
                return self._json(200, {})
            if len(seg) >= 4 and seg[1] in REPO_TYPES:
                return self._repo_api(method, REPO_TYPES[seg[1]], f"{seg[2]}/{seg[3]}", seg[4:], body)
            return False
        if method == "PUT" and seg[:1] == ["lfs-upload"] and len(seg) == 2:
            return self._lfs_put(seg[1], body)
        # /{prefix}{ns}/{name}.git/info/lfs/objects/batch and /{prefix}{ns}/{name}/resolve/{rev}/{path}
        repo_type = "model"
        if seg and seg[0] in ("datasets", "spaces"):
            repo_type, seg = REPO_TYPES[seg[0]], seg[1:]
        if len(seg) >= 6 and seg[1].endswith(".git") and seg[2:] == ["info", "lfs", "objects", "batch"]:
            if method == "POST":
                return self._lfs_batch(repo_type, f"{seg[0]}/{seg[1][:-4]}", json.loads(body or b"{}"))
        if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(method, repo_type, f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:]))
        return False

    def _validate_yaml(self, payload: dict):
        content = payload.get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*\n", content, re.DOTALL)
        errors = []
        if match:
            try:
                import yaml

                metadata = yaml.safe_load(match.group(1))
                if metadata is not None and not isinstance(metadata, dict):
                    errors.append({"message": "metadata must be a YAML mapping"})
            except ImportError:
                pass
            except Exception as err:  # yaml.YAMLError
                errors.append({"message": f"invalid YAML: {err}"})
        return self._json(400 if errors else 200, {"errors": errors, "warnings": []})

    def _create_repo(self, payload: dict):
        user = self._require_user()
        name = payload.get("name") or ""
        namespace = payload.get("organization") or user
        repo_type = payload.get("type") or "model"
        if repo_type not in URL_PREFIXES or not re.fullmatch(r"[\w.-]+", name) or "--" in name:
            raise HubError(400, f"Invalid repo name or type: {namespace}/{name} ({repo_type})")
        if not self.hub.can_write(user, namespace):
            raise HubError(403, f"You don't have the rights to create a repo under {namespace}")
        private = payload.get("visibility", "private" if payload.get("private") else "public") != "public"
        repo_id = f"{namespace}/{name}"
        answer = {"url": f"{self.hub.endpoint}/{URL_PREFIXES[repo_type]}{repo_id}", "name": repo_id}
        with self.hub.store.lock:
            if self.hub.store.key(repo_type, repo_id) in self.hub.store.repos:  # the client reads the url of a 409 too
                return self._json(409, {**answer, "error": f"You already created this {repo_type} repo"},
                                  {"X-Error-Message": f"You already created this {repo_type} repo"})
            self.hub.store.create_repo(repo_type, repo_id, private, user)
        return self._json(200, answer)

    def _repo_api(self, method: str, repo_type: str, repo_id: str, rest: list[str], body: bytes):
        store = self.hub.store
        if method == "GET" and (not rest or (rest[0] == "revision" and len(rest) >= 2)):
            repo = self._readable(repo_type, repo_id)
            revision = "/".join(rest[1:]) if rest else "main"
            with store.lock:
                sha = store.resolve(repo, revision)
                files = store.files_at(repo, sha)
                commit = repo["commits"][sha]
            blobs = _is_true(self.query.get("blobs", [None])[0])
            siblings = []
            for path in sorted(files):
                sibling = {"rfilename": path}
                if blobs:
                    info = _entry_info(store, path, files[path])
                    sibling.update(size=info["size"], blobId=info["oid"])
                    if "lfs" in info:
                        sibling["lfs"] = {"sha256": info["lfs"]["oid"], "size": info["lfs"]["size"],
                                          "pointerSize": info["lfs"]["pointerSize"]}
                siblings.append(sibling)
            return self._json(200, {"_id": hashlib.md5(repo_id.encode()).hexdigest()[:24], "id": repo_id,
                                    "author": repo_id.split("/")[0], "sha": sha, "private": repo["private"],
                                    "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
                                    "createdAt": repo["createdAt"], "lastModified": commit["date"],
                                    "siblings": siblings})
        if not rest:
            return False
        action = rest[0]
        if action == "tree" and method == "GET" and len(rest) >= 2:
            return self._tree(self._readable(repo_type, repo_id), rest[1], "/".join(rest[2:]).strip("/"))
        if action == "paths-info" and method == "POST" and len(rest) == 2:
            form = parse_qs(body.decode(), keep_blank_values=True)
            return self._paths_info(self._readable(repo_type, repo_id), rest[1], form.get("paths", []),
                                    _is_true((form.get("expand") or ["false"])[0]))
        if action == "refs" and method == "GET" and len(rest) == 1:
            repo = self._readable(repo_type, repo_id)
            branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": sha}
                        for b, sha in sorted(repo["refs"].items())]
            return self._json(200, {"branches": branches, "tags": [], "converts": [], "pullRequests": []})
        if action == "commits" and method == "GET" and len(rest) == 2:
            repo = self._readable(repo_type, repo_id)
            with store.lock:
                sha, items = store.resolve(repo, rest[1]), []
                while sha:
                    commit = repo["commits"][sha]
                    items.append({"id": sha, "title": commit["title"], "message": commit["message"],
                                  "date": commit["date"], "authors": [{"user": commit["author"]}]})
                    sha = commit["parent"]
            return self._json(200, items)
        if self.query.get("create_pr", ["0"])[0] not in ("", "0"):
            return False  # pull requests are not implemented
        if action == "preupload" and method == "POST" and len(rest) == 2:
            repo, _ = self._writable(repo_type, repo_id)
            with store.lock:
                files = store.files_at(repo, store.resolve(repo, rest[1]))
            answer = []
            for item in json.loads(body)["files"]:
                path, size = item["path"], int(item["size"])
                sample = base64.b64decode(item.get("sample") or "")
                lfs = path.lower().endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE or b"\0" in sample  # binary
                info = {"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False}
                existing = files.get(path)
                if existing is not None and existing["lfs"] == lfs:
                    info["oid"] = existing["sha256"] if lfs else _entry_info(store, path, existing)["oid"]
                answer.append(info)
            return self._json(200, {"files": answer, "commitOid": None})
        if action == "commit" and method == "POST" and len(rest) == 2:
            repo, user = self._writable(repo_type, repo_id)
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            if not lines or lines[0].get("key") != "header":
                raise HubError(400, "The commit payload must start with a header line")
            with store.lock:
                sha = store.commit(repo, rest[1], lines[0]["value"],
                                   [(line["key"], line["value"]) for line in lines[1:]], user)
            url = f"{self.hub.endpoint}/{URL_PREFIXES[repo_type]}{repo_id}/commit/{sha}"
            return self._json(200, {"success": True, "commitOid": sha, "commitUrl": url, "pullRequestUrl": None})
        if action == "branch" and len(rest) == 2 and method in ("POST", "DELETE"):
            repo, _ = self._writable(repo_type, repo_id)
            branch = rest[1]
            with store.lock:
                if method == "DELETE":
                    if branch not in repo["refs"]:
                        raise HubError(404, f"Branch {branch} not found", "RevisionNotFound")
                    if branch == "main":
                        raise HubError(403, "Cannot delete the main branch")
                    del repo["refs"][branch]
                else:
                    if branch in repo["refs"]:
                        raise HubError(409, f"Branch {branch} already exists")
                    if not re.fullmatch(r"[\w.][\w./-]*", branch) or COMMIT_RE.match(branch):
                        raise HubError(400, f"Invalid branch name {branch!r}")
                    start = json.loads(body or b"{}").get("startingPoint") or "main"
                    repo["refs"][branch] = store.resolve(repo, start)
                store.save()
            return self._json(200, {})
        return False

    def _last_commit(self, repo: dict, sha: str) -> dict:
        commit = repo["commits"][sha]
        return {"id": sha, "title": commit["title"], "date": commit["date"]}

    def _tree(self, repo: dict, revision: str, path: str):
        store = self.hub.store
        recursive = _is_true(self.query.get("recursive", [None])[0])
        expand = _is_true(self.query.get("expand", [None])[0])
        with store.lock:
            sha = store.resolve(repo, revision)
            files = store.files_at(repo, sha)
            last = self._last_commit(repo, sha) if expand else None
        prefix = path + "/" if path else ""
        if path and path in files:
            return self._json(200, [_entry_info(store, path, files[path], last)])
        if path and not any(p.startswith(prefix) for p in files):
            raise HubError(404, f"{path} does not exist at {revision}", "EntryNotFound",
                           {"X-Repo-Commit": sha})
        items, folders = [], set()
        for p in sorted(files):
            if not p.startswith(prefix):
                continue
            parts = p[len(prefix):].split("/")
            for depth in range(1, len(parts)):
                folder = prefix + "/".join(parts[:depth])
                if folder not in folders and (recursive or depth == 1):
                    folders.add(folder)
                    items.append(_dir_info(folder, files, last))
            if recursive or len(parts) == 1:
                items.append(_entry_info(store, p, files[p], last))
        return self._json(200, items)

    def _paths_info(self, repo: dict, revision: str, paths: list[str], expand: bool):
        store = self.hub.store
        with store.lock:
            sha = store.resolve(repo, revision)
            files = store.files_at(repo, sha)
            last = self._last_commit(repo, sha) if expand else None
        items = []
        for path in paths:
            path = path.strip("/")
            if path in files:
                items.append(_entry_info(store, path, files[path], last))
            elif path == "" or any(p.startswith(path + "/") for p in files):
                items.append(_dir_info(path, files, last))
        return self._json(200, items)

    def _resolve(self, method: str, repo_type: str, repo_id: str, revision: str, path: str):
        store = self.hub.store
        repo = self._readable(repo_type, repo_id)
        with store.lock:
            sha = store.resolve(repo, revision)
            entry = store.files_at(repo, sha).get(path)
        if entry is None:
            raise HubError(404, f"{path} does not exist at {revision}", "EntryNotFound", {"X-Repo-Commit": sha})
        data = store.object_path(entry["sha256"]).read_bytes()
        etag = entry["sha256"] if entry["lfs"] else git_blob_sha1(data)
        headers = {"X-Repo-Commit": sha, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if entry["lfs"]:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(data))})
        status = 200
        range_header = self.headers.get("Range")
        if range_header and method == "GET":
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header.strip())
            if not match or (not match.group(1) and not match.group(2)):
                raise HubError(416, f"Unsupported range {range_header}")
            if match.group(1):
                start = int(match.group(1))
                end = int(match.group(2)) if match.group(2) else len(data) - 1
            else:  # suffix range: the last N bytes
                start, end = max(len(data) - int(match.group(2)), 0), len(data) - 1
            if start >= len(data) or start > end:
                raise HubError(416, "Range not satisfiable", headers={"Content-Range": f"bytes */{len(data)}"})
            end = min(end, len(data) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start:end + 1], 206
        self._send(status, data, "application/octet-stream", headers, head=method == "HEAD")

    def _lfs_batch(self, repo_type: str, repo_id: str, payload: dict):
        self._writable(repo_type, repo_id)
        if payload.get("operation") != "upload":
            return False  # downloads go through /resolve
        objects = []
        for obj in payload.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            item = {"oid": oid, "size": size}
            if not self.hub.store.has_object(oid):
                item["actions"] = {"upload": {"href": f"{self.hub.endpoint}/lfs-upload/{oid}?size={size}"}}
            objects.append(item)
        return self._json(200, {"transfer": "basic", "objects": objects})

    def _lfs_put(self, oid: str, body: bytes):
        expected = self.query.get("size", [None])[0]
        if hashlib.sha256(body).hexdigest() != oid or (expected is not None and int(expected) != len(body)):
            raise HubError(400, f"Uploaded content does not match LFS object {oid}")
        self.hub.store.put_object(body)
        return self._send(200, b"", headers={"ETag": f'"{oid}"'})


class HubServer:
    """The server and its state. ``start()`` serves in a background thread; ``stop()`` always shuts down."""

    def __init__(self, root: str | Path, host: str = "127.0.0.1", port: int = 0,
                 tokens: dict[str, str] | None = None, orgs: dict[str, list[str]] | None = None,
                 log_file=None):
        self.store = HubStore(root)
        self.tokens = dict(tokens or {})  # token -> user; empty: any token is user "user", writing anywhere
        self.orgs = {user: set(names) for user, names in (orgs or {}).items()}
        self.log_file = log_file
        self.requests: list[str] = []
        self.unimplemented: list[str] = []
        self._httpd = ThreadingHTTPServer((host, port), HubHandler)
        self._httpd.daemon_threads = True
        self._httpd.hub = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://{self._httpd.server_address[0]}:{self.port}"

    def user_for(self, token: str) -> str | None:
        if not token:
            return None
        if not self.tokens:
            return "user"
        return self.tokens.get(token)

    def orgs_of(self, user: str) -> set[str]:
        return self.orgs.get(user, set())

    def can_write(self, user: str | None, namespace: str) -> bool:
        if user is None:
            return False
        return not self.tokens or namespace == user or namespace in self.orgs_of(user)

    def log(self, line: str) -> None:
        self.requests.append(line)
        if self.log_file is not None:
            print(line, file=self.log_file, flush=True)

    def record_unimplemented(self, method: str, path: str) -> None:
        line = f"501 not implemented: {method} {path}"
        self.unimplemented.append(line)
        print(f"hub_server: {line}", file=sys.stderr, flush=True)

    def start(self) -> "HubServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="test-hub", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def hub_env(endpoint: str, token: str | None, hf_home: str | Path) -> dict[str, str]:
    """Environment for a process whose Hub clients should talk to ``endpoint`` (set before they are imported)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGINGFACE_"))}
    env.pop("TRANSFORMERS_OFFLINE", None)
    env.update({
        "HF_ENDPOINT": endpoint, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "HF_DATASETS_OFFLINE": "0", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
    })
    if token:
        env["HF_TOKEN"] = token
    return env


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="A loopback Hugging Face Hub-compatible server for tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    parser.add_argument("--root", help="storage folder (default: a new temporary folder)")
    parser.add_argument("--token", action="append", default=[], metavar="TOKEN:USER",
                        help="accept this token as USER (repeatable); without any, every token is accepted")
    parser.add_argument("--org", action="append", default=[], metavar="USER:ORG", help="let USER write to ORG")
    args = parser.parse_args(argv)
    tokens = dict(item.split(":", 1) if ":" in item else (item, "user") for item in args.token)
    orgs: dict[str, list[str]] = {}
    for item in args.org:
        user, org = item.split(":", 1)
        orgs.setdefault(user, []).append(org)
    root = args.root or tempfile.mkdtemp(prefix="test-hub-")
    server = HubServer(root, args.host, args.port, tokens, orgs, log_file=sys.stderr)
    print(f"test Hub serving {root} at {server.endpoint} (HF_ENDPOINT={server.endpoint} HF_HUB_DISABLE_XET=1)",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
