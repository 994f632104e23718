"""The trust boundary on a search's storage path: on ``--resume`` Tune unpickles ``tuner.pkl``, the searcher's
state and the trials inside ``experiment_state-*.json`` (and a trial's ``error.pkl`` afterwards). Anyone who can
write the storage path (a shared bucket, an NFS folder) could plant a pickle there that runs as the user who
resumes. So nothing is handed to Tune unless this search provably wrote it:

- every state file the driver or Tune writes at the top of the search folder is copied, content-addressed, to
  ``.aae_state/blobs/<sha256>``, and listed with its hash in a manifest (``.aae_state/manifest-<generation>.json``)
  signed with an HMAC-SHA256 key that never lives in the storage path (``signing_key``);
- a trial folder's pickles (``params.pkl``, ``error.pkl``) are listed by hash;
- ``load_verified`` finds the newest manifest whose signature holds and whose blobs match, and
  ``restore_verified`` makes the folder exactly that before Tune reads it: mismatching top-level files are written
  back from their blobs, unsigned ones are deleted, unsigned or altered trial pickles are deleted.

The last signed state is also what survives a failed write: Tune's own sync overwrites its files in place (a full
disk leaves them truncated), while a manifest is written after its blobs and the previous generation is kept, so a
resume finds the newest complete state. Who must be trusted: whoever holds the key, and nobody else.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path

from aae_tune.errors import ConfigError, UntrustedState
from aae_tune.names import LEASE_FILE, SEARCH_RECORD, SPOOL_FILE, STATE_DIR
from aae_tune.search.storage_files import delete_file, list_files, list_folders, read_bytes, write_bytes

KEY_ENV = "AAE_TUNE_SIGNING_KEY"  # the key itself (clusters, CI): at least 32 characters
KEY_FILE_ENV = "AAE_TUNE_KEY_FILE"  # where the per-user key file is (default ~/.config/aae_tune/signing.key)
MIN_KEY_CHARS = 32
MANIFEST_LIMIT = 64 << 20  # bytes: a manifest lists hashes; 64 MiB is ~500K files
BLOB_LIMIT = 1 << 30  # bytes: Tune's experiment state of a 10,000-trial search is tens of MB
KEEP_GENERATIONS = 2  # the newest manifest and the one before (a write may die half-way)
# Files of the search folder that are ours and never unpickled: the lease and the spool are JSON read with bounds,
# Tune's marker is empty. The search record is ours too, but signed: it decides what a --resume must match.
UNSIGNED_FILES = {LEASE_FILE, SPOOL_FILE, ".validate_storage_marker"}


def key_file() -> Path:
    configured = os.environ.get(KEY_FILE_ENV)
    if configured:
        return Path(configured).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "aae_tune" / "signing.key"


def signing_key(create: bool = True) -> bytes:
    """The key that signs search state: ``$AAE_TUNE_SIGNING_KEY``, else the per-user key file, created on first use
    with 0600 permissions. A key file others can read or write is refused (like ssh's private keys)."""
    given = os.environ.get(KEY_ENV)
    if given is not None:
        if len(given) < MIN_KEY_CHARS:
            raise ConfigError([f"{KEY_ENV} must hold at least {MIN_KEY_CHARS} characters (e.g. the output of "
                               "`python -c 'import secrets; print(secrets.token_hex(32))'`)"], "signing key")
        return given.encode()
    path = key_file()
    if not path.exists():
        if not create:
            raise UntrustedState(f"no signing key at {path} (nor {KEY_ENV}): the search was signed with a key this "
                                 f"user does not have; set {KEY_ENV} or {KEY_FILE_ENV} to the key that started it")
        _create_key_file(path)
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO) or path.stat().st_uid != os.getuid():
        raise ConfigError([f"{path}: the signing key must be yours and private; run `chmod 600 {path}`"],
                          "signing key")
    key = path.read_bytes().strip()
    if len(key) < MIN_KEY_CHARS:
        raise ConfigError([f"{path}: holds {len(key)} characters, not a key; delete it to have a new one made"],
                          "signing key")
    return key


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another driver made it a moment ago
        return
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Manifest:
    """One signed generation of a search's state."""

    generation: int
    files: dict[str, str] = field(default_factory=dict)  # top-level file -> sha256; its bytes are in blobs/
    pickles: dict[str, str] = field(default_factory=dict)  # "<trial folder>/<name>.pkl" -> sha256

    def payload(self) -> bytes:
        body = {"generation": self.generation, "files": self.files, "pickles": self.pickles}
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def signed(self, key: bytes) -> bytes:
        mac = hmac.new(key, self.payload(), hashlib.sha256).hexdigest()
        return json.dumps({"manifest": json.loads(self.payload()), "hmac": mac}, sort_keys=True).encode()

    @classmethod
    def from_signed(cls, data: bytes, key: bytes) -> Manifest | None:
        """The manifest if ``data`` is one signed with ``key``, else None."""
        try:
            doc = json.loads(data)
            body = doc["manifest"]
            manifest = cls(int(body["generation"]), dict(body["files"]), dict(body["pickles"]))
            mac = str(doc["hmac"])
        except (ValueError, KeyError, TypeError):
            return None
        good = hmac.new(key, manifest.payload(), hashlib.sha256).hexdigest()
        return manifest if hmac.compare_digest(good, mac) else None


def manifest_name(generation: int) -> str:
    return f"manifest-{generation:08d}.json"


def state_dir(experiment_dir: str) -> str:
    return f"{experiment_dir}/{STATE_DIR}"


class StateSigner:
    """Keeps the signed state of one search current: the driver adds the files it writes, the Tune callback
    (``search.guard``) adds Tune's staged state at every experiment checkpoint, ``commit`` signs a generation."""

    def __init__(self, experiment_dir: str, key: bytes, base: Manifest | None = None):
        self.experiment_dir, self._key = experiment_dir, key
        self.manifest = Manifest(base.generation if base else 0, dict(base.files) if base else {},
                                 dict(base.pickles) if base else {})
        self._stored_blobs: set[str] = set(self.manifest.files.values()) if base else set()
        self._kept: list[set[str]] = [set(self.manifest.files.values())] if base else []  # blobs per generation
        self._pending: dict[str, bytes] = {}  # sha256 -> bytes still to upload
        self._hashed: dict[str, tuple[float, int, str]] = {}  # local path -> (mtime, size, sha256)
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        raise TypeError("a StateSigner holds the signing key and must never be pickled")

    def include(self, name: str, data: bytes) -> None:
        """A top-level file with these bytes (as the driver itself wrote them to the search folder)."""
        digest = sha256(data)
        with self._lock:
            self.manifest.files[name] = digest
            if digest not in self._stored_blobs:
                self._pending[digest] = data

    def include_stored(self, name: str) -> None:
        """A top-level file Tune wrote straight to the storage path (``tuner.pkl``), read back from there."""
        data = read_bytes(f"{self.experiment_dir}/{name}", BLOB_LIMIT)
        if data is not None:
            self.include(name, data)

    def include_staging(self, staging_dir: str) -> None:
        """Tune's local staging folder, as it is right before Tune uploads it: its top-level files and the pickles
        of its trial folders. Called inside Tune's experiment checkpoint, after Tune wrote every state file."""
        root = Path(staging_dir)
        if not root.is_dir():
            return
        for entry in sorted(root.iterdir()):
            if entry.is_file() and entry.name not in UNSIGNED_FILES and entry.name != SEARCH_RECORD:
                self._include_local(entry)
            elif entry.is_dir() and entry.name != STATE_DIR:
                for pickle_file in entry.glob("*.pkl"):
                    with self._lock:
                        self.manifest.pickles[f"{entry.name}/{pickle_file.name}"] = self._hash_file(pickle_file)

    def _include_local(self, path: Path) -> None:
        """A staged top-level file: hashed only when it changed, read once, uploaded only if no blob has it."""
        st = path.stat()
        seen = self._hashed.get(str(path))
        if seen and seen[:2] == (st.st_mtime, st.st_size) and seen[2] in self._stored_blobs:
            with self._lock:
                self.manifest.files[path.name] = seen[2]
            return
        data = path.read_bytes()
        self.include(path.name, data)
        self._hashed[str(path)] = (st.st_mtime, st.st_size, self.manifest.files[path.name])

    def _hash_file(self, path: Path) -> str:
        """sha256 of a local file, remembered by (mtime, size): a checkpoint of 1,000 trials rehashes only what
        changed."""
        st = path.stat()
        seen = self._hashed.get(str(path))
        if seen and seen[:2] == (st.st_mtime, st.st_size):
            return seen[2]
        digest = sha256(path.read_bytes())
        self._hashed[str(path)] = (st.st_mtime, st.st_size, digest)
        return digest

    def commit(self) -> None:
        """Upload the new blobs, then the next signed manifest, then drop what no kept generation needs. A failure
        (OSError: full disk, I/O or bucket error) propagates, leaving the previous generation whole."""
        with self._lock:
            pending, self._pending = self._pending, {}
            self.manifest.generation += 1
            signed = self.manifest.signed(self._key)
            generation = self.manifest.generation
        folder = state_dir(self.experiment_dir)
        try:
            for digest, data in pending.items():
                write_bytes(f"{folder}/blobs/{digest}", data)
            write_bytes(f"{folder}/{manifest_name(generation)}", signed)
        except BaseException:
            with self._lock:  # upload them again with the next commit
                self._pending = {**pending, **self._pending}
            raise
        self._stored_blobs |= set(pending)
        self._kept = [*self._kept, set(self.manifest.files.values())][-KEEP_GENERATIONS:]
        self._prune(generation)

    def _prune(self, generation: int) -> None:
        """Drop the manifests before the kept generations, and every blob none of them lists."""
        folder = state_dir(self.experiment_dir)
        for name in list_files(folder):
            if name.startswith("manifest-") and name < manifest_name(generation - KEEP_GENERATIONS + 1):
                delete_file(f"{folder}/{name}")
        referenced = set().union(*self._kept)
        for digest in list_files(f"{folder}/blobs"):
            if digest not in referenced:
                delete_file(f"{folder}/blobs/{digest}")
                self._stored_blobs.discard(digest)


@dataclass(frozen=True)
class VerifiedState:
    """The newest signed generation of a search folder whose every blob is present and intact."""

    experiment_dir: str
    manifest: Manifest

    def read(self, name: str) -> bytes | None:
        digest = self.manifest.files.get(name)
        if digest is None:
            return None
        return read_bytes(f"{state_dir(self.experiment_dir)}/blobs/{digest}", BLOB_LIMIT)


def signed_trials(state: VerifiedState) -> int:
    """How many trials the newest signed Tune experiment state holds (0 if it holds none or cannot be read)."""
    names = sorted(n for n in state.manifest.files if n.startswith("experiment_state-") and n.endswith(".json"))
    try:
        return len(json.loads(state.read(names[-1]) or b"{}").get("trial_data", [])) if names else 0
    except (ValueError, AttributeError):
        return 0


def load_verified(experiment_dir: str, key: bytes) -> VerifiedState:
    """The search's last signed state; ``UntrustedState`` (one line: what is wrong, what to do) if there is none."""
    folder = state_dir(experiment_dir)
    names = sorted((n for n in list_files(folder) if n.startswith("manifest-")), reverse=True)
    if not names:
        raise UntrustedState(
            f"the search at {experiment_dir} carries no signed state ({STATE_DIR}/ is missing or empty): it was not "
            "written by this version of aae_tune, or its state was removed. Nothing there is loaded; start it again "
            "under a new --name")
    for name in names:
        manifest = Manifest.from_signed(read_bytes(f"{folder}/{name}", MANIFEST_LIMIT) or b"", key)
        if manifest is not None and SEARCH_RECORD in manifest.files and _blobs_intact(folder, manifest):
            return VerifiedState(experiment_dir, manifest)
    raise UntrustedState(
        f"the state of the search at {experiment_dir} is not signed with this user's key ({key_source()}), or it "
        "was altered: nothing there is loaded. Resume as the user (or with the key) that started it, or start it "
        "again under a new --name")


def key_source() -> str:
    return f"${KEY_ENV}" if os.environ.get(KEY_ENV) else str(key_file())


def digest_at(location: str) -> str | None:
    """sha256 of a stored file; None if it is missing or larger than any state file can be."""
    try:
        data = read_bytes(location, BLOB_LIMIT)
    except ValueError:
        return None
    return None if data is None else sha256(data)


def _blobs_intact(folder: str, manifest: Manifest) -> bool:
    return all(digest_at(f"{folder}/blobs/{digest}") == digest for digest in set(manifest.files.values()))


def restore_verified(state: VerifiedState) -> list[str]:
    """Make the search folder exactly its signed state before Tune reads it; returns what was changed, one line
    each (an empty list when the folder already was)."""
    root, manifest, notes = state.experiment_dir, state.manifest, []
    present = list_files(root)
    for name, digest in manifest.files.items():
        current = digest_at(f"{root}/{name}") if name in present else None
        if current != digest:
            write_bytes(f"{root}/{name}", state.read(name) or b"")
            notes.append(f"{name}: {'missing' if current is None else 'changed since it was signed'}; put back "
                         "the signed copy")
    for name in present:
        if name not in manifest.files and name not in UNSIGNED_FILES:
            delete_file(f"{root}/{name}")
            notes.append(f"{name}: not signed by this search; removed")
    for folder in list_folders(root):
        if folder == STATE_DIR:
            continue
        for name in list_files(f"{root}/{folder}"):
            if not name.endswith(".pkl"):
                continue
            if manifest.pickles.get(f"{folder}/{name}") != digest_at(f"{root}/{folder}/{name}"):
                delete_file(f"{root}/{folder}/{name}")
                notes.append(f"{folder}/{name}: not signed by this search; removed")
    return notes
