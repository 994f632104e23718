"""What a trial's Tune result becomes in MLflow, and which code a search ran under."""

import subprocess
from pathlib import Path

from aae_tune import __version__
from aae_tune.search.lineage import TAG_CODE_RESUMED, TAG_CODE_VERSION, code_version
from aae_tune.search.tracking import SearchTracker, numeric_metrics


def test_a_score_carried_from_an_earlier_epoch_is_not_logged_again():
    # evaluation.every_epochs = 2: epoch 3 reports epoch 2's Parzen score to Tune (its schedulers need one)
    fresh = {"epoch": 2, "valid_epoch": 2, "valid_parzen_ll": 150.0, "valid_recon_loss": 30.0, "done": False}
    carried = {"epoch": 3, "valid_epoch": 2, "valid_parzen_ll": 150.0, "valid_recon_loss": 29.0, "pid": 7}
    assert numeric_metrics(fresh) == {"epoch": 2.0, "valid_parzen_ll": 150.0, "valid_recon_loss": 30.0}
    # the trainer's own validation reconstruction is computed every epoch and stays
    assert numeric_metrics(carried) == {"epoch": 3.0, "valid_recon_loss": 29.0}
    assert numeric_metrics({"epoch": 1, "recon_loss": float("nan"), "loss": 2}) == {"epoch": 1.0, "loss": 2.0}


def git_checkout(root: Path) -> str:
    """A one-commit repository at ``root`` (with a tracked file); its commit."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "tracked.py").write_text("x = 1\n")
    for args in (["init", "-q"], ["add", "tracked.py"],
                 ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first"]):
        subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)
    return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_code_version_names_the_commit_of_a_checkout_and_only_of_its_own(tmp_path):
    commit = git_checkout(tmp_path / "repo")
    tags = code_version(tmp_path / "repo")
    assert {k: tags[k] for k in (TAG_CODE_VERSION, "mlflow.source.git.commit")} == {
        TAG_CODE_VERSION: f"{__version__}+g{commit[:7]}", "mlflow.source.git.commit": commit}
    # MLflow's run page shows "Source" (and the commit beside it) only with a source name and type
    assert tags["mlflow.source.name"] == "aae_tune.search" and tags["mlflow.source.type"] == "LOCAL"
    (tmp_path / "repo" / "tracked.py").write_text("x = 2\n")  # an uncommitted change to a tracked file
    assert code_version(tmp_path / "repo")[TAG_CODE_VERSION] == f"{__version__}+g{commit[:7]}.dirty"
    (tmp_path / "repo" / "site-packages").mkdir()  # installed inside some other repository: not its commit
    for elsewhere in (tmp_path / "repo" / "site-packages", tmp_path):  # the latter: no repository at all
        tags = code_version(elsewhere)
        assert tags[TAG_CODE_VERSION] == __version__ and "mlflow.source.git.commit" not in tags
        assert tags["mlflow.source.name"] == "aae_tune.search"


def test_a_search_resumed_under_other_code_records_every_version(tmp_path):
    """A real MLflow store: the start's version on the parent run; each resume under a different version appends
    it to aae_code_resumed_under and returns a note; a resume under the same code changes nothing."""
    tracker = SearchTracker(f"sqlite:///{tmp_path}/mlflow.db", "aae-test", "s")
    v1, v2 = {TAG_CODE_VERSION: "0.1.0+gaaaaaaa"}, {TAG_CODE_VERSION: "0.1.0+gbbbbbbb"}
    assert tracker.record_code(v1, resume=False) is None
    assert tracker.record_code(v1, resume=True) is None
    note = tracker.record_code(v2, resume=True)
    assert "started under code 0.1.0+gaaaaaaa and resumes under 0.1.0+gbbbbbbb" in note
    assert tracker.record_code(v2, resume=True) is None
    assert tracker.record_code(v1, resume=True) is not None  # back to the first code: a change again
    tags = tracker.client.get_run(tracker.parent_run_id).data.tags
    assert tags[TAG_CODE_VERSION] == "0.1.0+gaaaaaaa"
    assert tags[TAG_CODE_RESUMED] == "0.1.0+gbbbbbbb,0.1.0+gaaaaaaa"
