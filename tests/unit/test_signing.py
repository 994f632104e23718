"""The trust boundary on a search folder (search.signing) and the lease (search.lease), on a real folder."""

import json
import os
import pickle
import stat
import time

import pytest

from aae_tune.errors import ConfigError, SearchBusy, UntrustedState
from aae_tune.names import LEASE_FILE, SEARCH_RECORD, STATE_DIR
from aae_tune.search.lease import SearchLease, read_holder
from aae_tune.search.signing import (
    KEY_ENV,
    KEY_FILE_ENV,
    StateSigner,
    load_verified,
    restore_verified,
    signing_key,
)

KEY = b"k" * 40


class Planted:
    """A pickle that, if ever loaded, leaves a marker file: what an attacker with write access would plant."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def signed_search(tmp_path, key=KEY):
    """A search folder as the driver and Tune leave it: record, tuner.pkl, staged state, a trial's params.pkl."""
    folder = tmp_path / "search"
    staging = tmp_path / "staging"
    (staging / "trial_1").mkdir(parents=True)
    (staging / "experiment_state-1.json").write_text(json.dumps({"trials": [1]}))
    (staging / "searcher-state-1.pkl").write_bytes(pickle.dumps({"searcher": 1}))
    (staging / "trial_1" / "params.pkl").write_bytes(pickle.dumps({"lr": 0.1}))
    signer = StateSigner(str(folder), key)
    folder.mkdir()
    (folder / SEARCH_RECORD).write_text(json.dumps({"state": "running"}))
    signer.include(SEARCH_RECORD, (folder / SEARCH_RECORD).read_bytes())
    (folder / "tuner.pkl").write_bytes(pickle.dumps({"tuner": 1}))
    signer.include_stored("tuner.pkl")
    signer.include_staging(str(staging))
    signer.commit()
    # what Tune's upload does: the staged files land in the search folder
    for path in staging.rglob("*"):
        if path.is_file():
            (folder / path.relative_to(staging)).parent.mkdir(parents=True, exist_ok=True)
            (folder / path.relative_to(staging)).write_bytes(path.read_bytes())
    return folder, signer, staging


def test_a_signed_folder_verifies_and_restores_unchanged(tmp_path):
    folder, _, _ = signed_search(tmp_path)
    state = load_verified(str(folder), KEY)
    assert json.loads(state.read(SEARCH_RECORD)) == {"state": "running"}
    assert restore_verified(state) == []


def test_planted_pickles_are_removed_or_replaced_and_never_loaded(tmp_path):
    folder, _, _ = signed_search(tmp_path)
    marker = tmp_path / "pwned"
    evil = pickle.dumps(Planted(marker))
    (folder / "tuner.pkl").write_bytes(evil)  # replaces a signed file
    (folder / "experiment_state-2099.json").write_bytes(evil)  # a newer state Tune would pick
    (folder / "trial_1" / "error.pkl").write_bytes(evil)  # what the result grid unpickles
    (folder / "trial_1" / "params.pkl").write_bytes(evil)
    notes = restore_verified(load_verified(str(folder), KEY))
    assert len(notes) == 4, notes
    assert pickle.loads((folder / "tuner.pkl").read_bytes()) == {"tuner": 1}
    assert not (folder / "experiment_state-2099.json").exists()
    assert not (folder / "trial_1" / "error.pkl").exists() and not (folder / "trial_1" / "params.pkl").exists()
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["no-state", "other-key", "tampered-manifest", "record-removed-from-blobs"])
def test_an_unsigned_or_altered_folder_is_refused(tmp_path, damage):
    folder, _, _ = signed_search(tmp_path)
    state_dir = folder / STATE_DIR
    key = KEY
    if damage == "no-state":
        for path in sorted(state_dir.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
    elif damage == "other-key":
        key = b"x" * 40
    elif damage == "tampered-manifest":
        manifest = next(state_dir.glob("manifest-*.json"))
        doc = json.loads(manifest.read_text())
        doc["manifest"]["files"]["tuner.pkl"] = "0" * 64
        manifest.write_text(json.dumps(doc))
    else:
        for blob in (state_dir / "blobs").iterdir():
            blob.write_bytes(b"changed")
    with pytest.raises(UntrustedState, match="new --name"):
        load_verified(str(folder), key)


def test_a_broken_newest_generation_falls_back_to_the_one_before(tmp_path):
    folder, signer, staging = signed_search(tmp_path)
    (staging / "experiment_state-1.json").write_text(json.dumps({"trials": [1, 2]}))
    signer.include_staging(str(staging))
    signer.commit()
    manifests = sorted((folder / STATE_DIR).glob("manifest-*.json"))
    assert len(manifests) == 2
    manifests[-1].write_bytes(manifests[-1].read_bytes()[:50])  # a write that died half-way
    state = load_verified(str(folder), KEY)
    assert state.manifest.generation == 1
    restore_verified(state)
    assert json.loads((folder / "experiment_state-1.json").read_text()) == {"trials": [1]}


def test_old_generations_and_their_blobs_are_pruned(tmp_path):
    folder, signer, staging = signed_search(tmp_path)
    for i in range(5):
        (staging / "experiment_state-1.json").write_text(json.dumps({"trials": list(range(i + 2))}))
        signer.include_staging(str(staging))
        signer.commit()
    assert len(list((folder / STATE_DIR).glob("manifest-*.json"))) == 2
    # record, tuner, searcher + the experiment state of each kept generation
    assert len(list((folder / STATE_DIR / "blobs").iterdir())) == 5
    load_verified(str(folder), KEY)


def test_the_signer_is_never_pickled(tmp_path):
    with pytest.raises(TypeError, match="never be pickled"):
        pickle.dumps(StateSigner(str(tmp_path), KEY))


def test_key_file_is_created_private_and_a_readable_one_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "cfg" / "signing.key"))
    with pytest.raises(UntrustedState, match="no signing key"):
        signing_key(create=False)
    key = signing_key()
    path = tmp_path / "cfg" / "signing.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and signing_key() == key and len(key) >= 32
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        signing_key()
    monkeypatch.setenv(KEY_ENV, "short")
    with pytest.raises(ConfigError, match="at least 32"):
        signing_key()


def test_a_second_lease_is_refused_and_a_dead_holders_lease_is_taken_over(tmp_path):
    folder = str(tmp_path)
    with SearchLease(folder, "s", ttl=30) as first:
        with pytest.raises(SearchBusy, match=f"pid {os.getpid()} .*being run|being run by another driver pid"):
            SearchLease(folder, "s", ttl=30).acquire()
        assert read_holder(folder).owner == first.owner
    assert not (tmp_path / LEASE_FILE).exists()  # given back on exit

    dead = {"owner": "x", "host": os.uname().nodename, "pid": 2**22 + 12345, "started": time.time(),
            "renewed": time.time()}
    (tmp_path / LEASE_FILE).write_text(json.dumps(dead))
    lease = SearchLease(folder, "s", ttl=30)
    lease.acquire()
    assert "is gone" in lease.note and read_holder(folder).owner == lease.owner
    lease.release()

    expired = {**dead, "host": "elsewhere", "renewed": time.time() - 31}
    (tmp_path / LEASE_FILE).write_text(json.dumps(expired))
    lease = SearchLease(folder, "s", ttl=30)
    lease.acquire()
    assert "expired" in lease.note
    lease.release()
