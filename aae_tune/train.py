"""The training loop shared by every AAE variant: phases per mini-batch, schedules per epoch, exact resume.

All randomness after model initialisation (prior samples, encoder noise, input corruption) comes from one
``torch.Generator`` owned by the trainer; the data order of epoch e is a permutation seeded by (seed, e). Saving
that generator's state with the models, optimizers and schedules makes "train 4 epochs" and "train 2, save,
restore, train 2" produce identical weights.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aae_tune.config import ExperimentConfig, ScheduleConfig
from aae_tune.data.labels import visible_labels
from aae_tune.data.splits import SplitData
from aae_tune.errors import CheckpointError, TrainingDiverged
from aae_tune.model.aae import AdversarialAutoencoder, Batch
from aae_tune.model.inference import recon_loss
from aae_tune.model.io import resolve_device, state_mismatches
from aae_tune.model.registry import build_model
from aae_tune.names import CHECKPOINT_FILE

# What ``Trainer.save`` writes and ``Trainer.load`` needs
CHECKPOINT_KEYS = ("epoch", "config_json", "model", "optimizers", "schedulers", "generator")


def make_optimizer(params: list[torch.nn.Parameter], sched: ScheduleConfig, kind: str) -> torch.optim.Optimizer:
    # fused: one kernel over all parameters. PyTorch's default (one op per tensor and update term) made Adam's
    # steps ~20 % of a likelihood step on CPU, 5x the fused kernel's time (benchmarks/epoch_throughput.py).
    if kind == "adam":
        return torch.optim.Adam(params, lr=sched.lr, betas=(sched.momentum, 0.999), fused=True)
    return torch.optim.SGD(params, lr=sched.lr, momentum=sched.momentum, fused=True)


class Trainer:
    """Owns model, optimizers, schedules, RNG and epoch counter for one experiment config."""

    def __init__(self, cfg: ExperimentConfig, data: SplitData, device: str | torch.device | None = None):
        self.cfg, self.device = cfg, resolve_device(device)
        with warnings.catch_warnings():
            # Arrays from Ray's object store are read-only shared memory; the trainer never writes to them, and
            # sharing them (instead of a copy per trial) is the point.
            warnings.filterwarnings("ignore", message=".*not writable.*")
            self.train_x = torch.as_tensor(data.train_x, dtype=torch.float32, device=self.device)  # (N, D)
            self.valid_x = torch.as_tensor(data.valid_x, dtype=torch.float32, device=self.device)
        # (N,) labels, -1 where hidden: a seeded subset balanced per class when cfg.num_labeled asks for one
        labels = visible_labels(data.train_y, cfg.num_labeled, cfg.num_classes, cfg.seed) if cfg.uses_labels \
            else np.asarray(data.train_y, dtype=np.int64)
        self.train_y = torch.as_tensor(labels, dtype=torch.long, device=self.device)
        self.valid_y = torch.as_tensor(np.asarray(data.valid_y), dtype=torch.long, device=self.device)
        self.labeled = torch.nonzero(self.train_y >= 0).squeeze(1)  # (L,) indices of the visible labels
        if len(self.train_x) < cfg.batch_size:
            raise ValueError(f"batch_size {cfg.batch_size} is larger than the training set ({len(self.train_x)})")
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's global RNG
            torch.manual_seed(cfg.seed)
            self.model: AdversarialAutoencoder = build_model(cfg, self.train_x.shape[1]).to(self.device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(cfg.seed)
        self.model.use_generator(self.generator)
        self.phases = self.model.phases()
        self.uses_labeled_batches = any(p.name == "classification" for p in self.phases)
        self.optimizers = {
            p.name: make_optimizer(p.parameters(), getattr(cfg.optim, p.group), cfg.optim.optimizer)
            for p in self.phases
        }
        self.schedulers = {
            p.name: torch.optim.lr_scheduler.MultiStepLR(
                self.optimizers[p.name],
                milestones=list(getattr(cfg.optim, p.group).drop_epochs),
                gamma=getattr(cfg.optim, p.group).drop_factor,
            )
            for p in self.phases
        }
        self.epoch = 0  # epochs completed

    # ---- one epoch ----------------------------------------------------------------------------------
    def epoch_order(self, epoch: int) -> torch.Tensor:
        """Permutation of the training set for ``epoch``; depends only on (seed, epoch)."""
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.train_x), generator=g).to(self.device)

    def labeled_batches(self, epoch: int, n_batches: int) -> torch.Tensor:
        """(n_batches, L) indices into the labeled subset, L = min(batch_size, subset size): the classification
        phase's mini-batches, cycling through seeded permutations of the (often tiny) subset."""
        pool = self.labeled
        size = min(self.cfg.batch_size, len(pool))
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch + 7_919_000)  # apart from epoch_order
        repeats = -(-n_batches * size // len(pool))
        order = torch.cat([torch.randperm(len(pool), generator=g) for _ in range(repeats)])[: n_batches * size]
        return pool[order.to(self.device)].view(n_batches, size)

    def train_epoch(self) -> dict[str, float]:
        """One pass over the training set (the last incomplete batch is dropped); returns epoch metrics."""
        start = time.perf_counter()
        self.model.train()
        order, bs = self.epoch_order(self.epoch), self.cfg.batch_size
        sums: dict[str, torch.Tensor] = {}
        n_batches = len(order) // bs
        labeled = self.labeled_batches(self.epoch, n_batches) if self.uses_labeled_batches else None
        for i in range(n_batches):
            idx = order[i * bs : (i + 1) * bs]
            batch = Batch(self.train_x[idx], self.train_y[idx])
            if labeled is not None:
                batch = Batch(batch.x, batch.y, self.train_x[labeled[i]], self.train_y[labeled[i]])
            for phase in self.phases:
                opt = self.optimizers[phase.name]
                opt.zero_grad(set_to_none=True)
                with self.autocast():
                    loss, metrics = phase.loss(batch, self.generator)
                # inputs= restricts backward to this phase's parameters: no wasted weight gradients for the
                # discriminator during the generator phase.
                loss.backward(inputs=opt.param_groups[0]["params"])
                opt.step()
                for k, v in metrics.items():
                    sums[k] = sums[k] + v if k in sums else v.clone()
        result = {k: float(v) / n_batches for k, v in sums.items()}  # one host sync per epoch
        bad = [k for k, v in result.items() if not math.isfinite(v)]
        if bad:
            raise TrainingDiverged(f"epoch {self.epoch + 1}: non-finite {', '.join(bad)} ({result}); lower the lr")
        for sched in self.schedulers.values():
            sched.step()
        self.epoch += 1
        result.update(self.validation_recon_loss())
        for phase in self.phases:  # the rate each schedule is at: a PBT-mutated schedule is visible per epoch
            result[f"lr_{phase.group}"] = self.optimizers[phase.name].param_groups[0]["lr"]
        result["epoch_time_s"] = time.perf_counter() - start
        return result

    def autocast(self) -> torch.autocast:
        """The phases' forward passes: bfloat16 matrix multiplies when ``precision`` is bf16 (weights, gradients,
        optimizer state and the costs stay fp32; backward runs outside, in the dtypes autocast recorded)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.precision == "bf16")

    def validation_recon_loss(self) -> dict[str, float]:
        """Validation reconstruction error (Euclidean, per example), no input corruption."""
        return {"valid_recon_loss": recon_loss(self.model, self.valid_x, self.valid_y)}

    # ---- checkpoints --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": 1,
            "epoch": self.epoch,
            "config_json": json.dumps(self.cfg.to_dict(), sort_keys=True),
            "data_dim": self.model.data_dim,
            "model": self.model.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "generator": self.generator.get_state(),
        }

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the full state to ``directory/trainer.pt`` atomically (write a temp file, then rename)."""
        path = Path(directory) / CHECKPOINT_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        buffer = io.BytesIO()
        torch.save(self.state_dict(), buffer)  # serialise first: a write error is then a plain OSError (ENOSPC...)
        try:
            with open(tmp, "wb") as f:
                f.write(buffer.getbuffer())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)  # atomic: a reader sees the old checkpoint or the new one, never half of one
        except OSError as exc:
            raise CheckpointError(
                f"cannot write checkpoint {path}: {exc.strerror}; free disk space or choose another folder — "
                "the previous checkpoint there is intact"
            ) from exc
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def load(self, directory: str | os.PathLike) -> None:
        """Restore a state written by ``save``; refuses checkpoints of a different architecture."""
        path = Path(directory) / CHECKPOINT_FILE
        if not path.is_file():
            raise CheckpointError(f"no checkpoint at {path}")
        try:
            # weights_only: never unpickle arbitrary objects from a checkpoint (it may come from a remote store).
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user-facing problem
            raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
        missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
        if missing:
            raise CheckpointError(f"checkpoint {path} is not a trainer checkpoint (no {', '.join(missing)})")
        saved = ExperimentConfig.from_dict(json.loads(state["config_json"]), source=f"config in {path}")
        if saved.architecture() != self.cfg.architecture():
            diff = sorted(k for k, v in saved.architecture().items() if self.cfg.architecture()[k] != v)
            raise CheckpointError(
                f"checkpoint {path} was written for a different model ({', '.join(diff)} differ); "
                "use the config it was trained with or start a fresh run"
            )
        mismatches = state_mismatches(self.model.state_dict(), state["model"])
        if mismatches:  # the config matches but the weights do not: an altered or foreign file
            raise CheckpointError(f"checkpoint {path}: its weights do not fit its config: {'; '.join(mismatches)}")
        self.model.load_state_dict(state["model"])
        for k, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][k])
        for k, sched in self.schedulers.items():
            sched.load_state_dict(state["schedulers"][k])
        self.generator.set_state(state["generator"].cpu())  # generator states live on the host
        self.epoch = int(state["epoch"])
        if saved.to_dict()["optim"] != self.cfg.to_dict()["optim"]:
            # resumed with other rates (e.g. `aae-tune train --resume --set optim...`, or a schedule-mutating
            # scheduler): the loaded optimizer states still hold the old ones, which would silently win
            self.use_config_rates()

    def use_config_rates(self) -> None:
        """Give every optimizer and schedule this config's rate, momentum and drops at the epoch reached (the
        restored states carry those of the config that wrote them)."""
        for phase in self.phases:
            sched_cfg: ScheduleConfig = getattr(self.cfg.optim, phase.group)
            scheduler = self.schedulers[phase.name]
            scheduler.base_lrs = [sched_cfg.lr]
            scheduler.milestones = Counter(sched_cfg.drop_epochs)
            scheduler.gamma = sched_cfg.drop_factor
            drops = sum(1 for e in sched_cfg.drop_epochs if e <= self.epoch)
            for group in self.optimizers[phase.name].param_groups:
                group["initial_lr"] = sched_cfg.lr
                group["lr"] = sched_cfg.lr * sched_cfg.drop_factor**drops
                if "betas" in group:  # Adam: momentum is beta1
                    group["betas"] = (sched_cfg.momentum, group["betas"][1])
                else:
                    group["momentum"] = sched_cfg.momentum


EpochCallback = Callable[[int, dict[str, float], Trainer], None]


def train(
    cfg: ExperimentConfig,
    data: SplitData,
    *,
    epochs: int | None = None,
    device: str | torch.device | None = None,
    callback: EpochCallback | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
) -> Trainer:
    """Train ``cfg`` up to ``epochs`` (default cfg.epochs) in total, calling ``callback(epoch, metrics, trainer)``
    after each epoch. With ``checkpoint_dir`` the state is saved there after every epoch; with ``resume`` training
    continues from the checkpoint found there (if any)."""
    trainer = Trainer(cfg, data, device)
    if resume and checkpoint_dir is not None and (Path(checkpoint_dir) / CHECKPOINT_FILE).exists():
        trainer.load(checkpoint_dir)
    total = cfg.epochs if epochs is None else epochs
    while trainer.epoch < total:
        metrics = trainer.train_epoch()
        if checkpoint_dir is not None:
            trainer.save(checkpoint_dir)
        if callback is not None:
            callback(trainer.epoch, metrics, trainer)
    return trainer
