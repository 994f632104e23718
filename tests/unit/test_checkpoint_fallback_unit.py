"""A trial whose latest checkpoint cannot be read resumes from its newest earlier one that can
(``aae_tune.search.trainable.restore_trainer``), driven against a folder of real checkpoints written by a real Trainer.
The search-level version (a real Tune trial killed and restored) is tests/system/test_checkpoint_fallback.py."""

import logging
from pathlib import Path

import pytest
import torch
from pyarrow import fs as pafs
from ray import tune

from aae_tune.errors import CheckpointError, TrainingDiverged
from aae_tune.names import CHECKPOINT_FILE, DIVERGED_FILE
from aae_tune.search.trainable import restore_trainer
from aae_tune.train import Trainer

TRIAL = "aae_trainable_0a1b2_00000_0_2025-01-01_00-00-00"  # a trial folder as Tune names it


@pytest.fixture
def trial_dir(tmp_path: Path, small_mnist, tiny_config) -> Path:
    """A trial folder as Tune leaves it: checkpoint_000000..000002 after epochs 1..3, and one unrelated file."""
    folder = tmp_path / TRIAL
    trainer = Trainer(tiny_config.replace(epochs=3), small_mnist)
    for index in range(3):
        trainer.train_epoch()
        trainer.save(folder / f"checkpoint_{index:06d}")
    (folder / "result.json").write_text("{}")
    return folder


def truncate(checkpoint_dir: Path) -> None:
    path = checkpoint_dir / CHECKPOINT_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a write cut off half-way


def fresh(small_mnist, tiny_config) -> Trainer:
    return Trainer(tiny_config.replace(epochs=3), small_mnist)


def weights_of(checkpoint_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint_dir / CHECKPOINT_FILE, weights_only=True)["model"]


def test_intact_latest_checkpoint_is_used_without_a_warning(trial_dir, small_mnist, tiny_config, caplog):
    trainer = fresh(small_mnist, tiny_config)
    with caplog.at_level(logging.WARNING, logger="aae_tune.search"):
        used = restore_trainer(trainer, tune.Checkpoint.from_directory(trial_dir / "checkpoint_000002"), TRIAL)
    assert used.path == str(trial_dir / "checkpoint_000002") and trainer.epoch == 3
    assert not caplog.records


def test_truncated_latest_falls_back_to_the_previous_checkpoint(trial_dir, small_mnist, tiny_config, caplog):
    truncate(trial_dir / "checkpoint_000002")
    trainer = fresh(small_mnist, tiny_config)
    with caplog.at_level(logging.WARNING, logger="aae_tune.search"):
        used = restore_trainer(trainer, tune.Checkpoint.from_directory(trial_dir / "checkpoint_000002"), TRIAL)
    assert used.path == str(trial_dir / "checkpoint_000001") and trainer.epoch == 2
    expected = weights_of(trial_dir / "checkpoint_000001")
    assert all(torch.equal(v, expected[k]) for k, v in trainer.model.state_dict().items())
    [record] = caplog.records  # one warning, naming the bad checkpoint and the one used
    message = record.getMessage()
    assert "\n" not in message
    assert f"unreadable checkpoint {trial_dir / 'checkpoint_000002'} (" in message
    assert f"resuming from the earlier checkpoint {trial_dir / 'checkpoint_000001'} (epoch 2)" in message
    trainer.train_epoch()  # and training goes on from there
    assert trainer.epoch == 3


def test_several_bad_checkpoints_are_skipped_newest_first(trial_dir, small_mnist, tiny_config, caplog):
    truncate(trial_dir / "checkpoint_000002")
    (trial_dir / "checkpoint_000001" / CHECKPOINT_FILE).unlink()  # a folder whose trainer.pt never arrived
    trainer = fresh(small_mnist, tiny_config)
    with caplog.at_level(logging.WARNING, logger="aae_tune.search"):
        used = restore_trainer(trainer, tune.Checkpoint.from_directory(trial_dir / "checkpoint_000002"), TRIAL)
    assert used.path.endswith("checkpoint_000000") and trainer.epoch == 1
    message = caplog.records[0].getMessage()
    assert message.index("checkpoint_000002 (") < message.index("checkpoint_000001 (") < message.index("earlier")


def test_newer_folders_than_the_bad_one_are_not_tried(trial_dir, small_mnist, tiny_config):
    # Tune restores from its latest *registered* checkpoint; a higher-numbered folder may be one a killed worker
    # had not finished reporting, so only older ones are candidates.
    truncate(trial_dir / "checkpoint_000001")
    trainer = fresh(small_mnist, tiny_config)
    used = restore_trainer(trainer, tune.Checkpoint.from_directory(trial_dir / "checkpoint_000001"), TRIAL)
    assert used.path.endswith("checkpoint_000000") and trainer.epoch == 1


def test_no_readable_checkpoint_is_one_error_naming_each_one_tried(trial_dir, small_mnist, tiny_config):
    for index in range(3):
        truncate(trial_dir / f"checkpoint_{index:06d}")
    trainer = fresh(small_mnist, tiny_config)
    with pytest.raises(CheckpointError) as raised:
        restore_trainer(trainer, tune.Checkpoint.from_directory(trial_dir / "checkpoint_000002"), TRIAL)
    header, *lines = str(raised.value).splitlines()
    assert "no checkpoint of this trial can be read" in header
    assert [line.split(": ")[0].strip() for line in lines] == [
        str(trial_dir / f"checkpoint_{index:06d}") for index in (2, 1, 0)
    ]
    assert all("cannot read checkpoint" in line for line in lines)
    assert trainer.epoch == 0  # untouched


def test_a_diverged_marker_still_stops_the_trial(trial_dir, small_mnist, tiny_config):
    marker = trial_dir / "checkpoint_000003"
    marker.mkdir()
    (marker / DIVERGED_FILE).write_text("epoch 4: non-finite recon_loss")
    with pytest.raises(TrainingDiverged, match="epoch 4: non-finite recon_loss"):
        restore_trainer(fresh(small_mnist, tiny_config), tune.Checkpoint.from_directory(marker), TRIAL)


def test_another_trials_checkpoint_is_not_replaced_by_its_older_ones(trial_dir, small_mnist, tiny_config):
    # A PBT member restored from another member's checkpoint: that member's older states are not this trial's.
    truncate(trial_dir / "checkpoint_000002")
    with pytest.raises(CheckpointError) as raised:
        restore_trainer(fresh(small_mnist, tiny_config),
                        tune.Checkpoint.from_directory(trial_dir / "checkpoint_000002"), "some_other_trial")
    assert len(str(raised.value).splitlines()) == 2  # the header and the one checkpoint tried


def test_checkpoints_are_listed_and_fetched_through_the_checkpoints_filesystem(trial_dir, small_mnist, tiny_config):
    # A filesystem that is not pyarrow's LocalFileSystem (as S3 is not): the siblings are listed through it and each
    # candidate is downloaded to a temporary folder, never read from a local path of the storage.
    storage = pafs.SubTreeFileSystem(str(trial_dir.parent), pafs.LocalFileSystem())
    truncate(trial_dir / "checkpoint_000002")
    trainer = fresh(small_mnist, tiny_config)
    used = restore_trainer(trainer, tune.Checkpoint(f"{TRIAL}/checkpoint_000002", filesystem=storage), TRIAL)
    assert used.path == f"{TRIAL}/checkpoint_000001" and used.filesystem is storage and trainer.epoch == 2
