"""The MIMONets training recipe: independent images per slot, dynamic widths, CE on every slot.

Each step holds ``batch`` superposed groups. With probability ``single_prob`` a step runs at width 1
(every image in all N slots), otherwise at width N with N independent random images per group.
Options of the equal-cost study (issue 20): distillation from a teacher's logits (``distill``) or from the
model's own width-1 prediction into its width-N slots (``self_distill``), the authors' isometry regulariser on
the trunk's convolutions (``isometry``), and fixed instead of learned binding keys (``learn_keys``).
Every image is augmented on its own before binding (``augment``: the ``camera`` preset, shifts and flips
only, or nothing). SGD with Nesterov momentum and a one-cycle learning rate; optional mixup. Runs on the
GPU when there is one (bfloat16 autocast), deterministic for a seed on a given device, and resumable from
a checkpoint written every ``checkpoint_every`` steps and on Ctrl-C.
"""

from __future__ import annotations

import io
import json
import logging
import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..atomic import atomic_write_bytes
from ..datasets import AUGMENT_PRESETS, ImageSet
from ..errors import BackendUnavailableError, ConfigError, DataError
from ..models.base import SuperposedClassifier
from ..models.config import OPTIMIZERS
from ..progress import bar
from ..runtime.batching import spec_for
from ..runtime.preprocess import Normalizer
from .camera_augment import CameraAugment, camera_augment
from .evaluate import evaluate

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """The recipe's settings (``edge-mimo train`` options map onto these fields)."""
    epochs: int = 15
    batch: int = 64  # superposed groups per step
    lr: float = 0.1
    weight_decay: float = 5e-4
    optimizer: str = "sgd"  # "sgd" (Nesterov momentum; the convolutional models) or "adamw" (MIMOFormer)
    single_prob: float = 0.2
    mixup: float = 0.0  # Beta(alpha, alpha) mixup; 0 disables
    augment: str = "camera"  # one of AUGMENT_PRESETS: camera effects, 2-pixel shifts + flips, or none
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    bn_batches: int = 100  # batches for the final BatchNorm re-estimate (0: keep the running averages)
    grad_clip: float = 5.0  # clip the gradient's global norm (0: off); guards the high-rate phase
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda"
    checkpoint_every: int = 200  # steps between checkpoints within an epoch
    eval_every: int = 1  # epochs between validation evaluations (0: only at the end)
    distill: float = 0.0  # weight of the teacher's soft targets (needs ``teacher`` logits in train()); 0: off
    self_distill: float = 0.0  # weight of the model's own width-1 prediction as target of its width-N slots
    distill_temperature: float = 4.0  # softening of both distillation targets
    isometry: float = 0.0  # weight of the orthogonal-convolution (isometry) regulariser; MIMONets use 1e-4
    learn_keys: bool = True  # False: the binding keys stay at their random initial values
    width_warmup: float = 0.0  # share of steps over which the width-1 share falls from 1 to single_prob (0: none)

    def __post_init__(self) -> None:
        if self.augment not in AUGMENT_PRESETS:
            raise ConfigError(f"augment {self.augment!r} is unknown: choose one of {', '.join(AUGMENT_PRESETS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer {self.optimizer!r} is unknown: choose one of {', '.join(OPTIMIZERS)}")
        if self.epochs < 1 or self.batch < 1:
            raise ConfigError(f"epochs and batch (--epochs, --batch) must be >= 1, got {self.epochs} and {self.batch}")
        for name in ("lr", "weight_decay", "mixup", "single_prob"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0) or name == "lr" and value == 0:
                raise ConfigError(f"{name} (--{name.replace('_', '-')}) must be a finite number >= 0"
                                  f"{' (and > 0)' if name == 'lr' else ''}, got {value}")
        if self.single_prob > 1:
            raise ConfigError(f"single_prob (--single-prob) is a share of steps, 0..1: got {self.single_prob}")
        if not 0 <= self.width_warmup <= 1:
            raise ConfigError(f"width_warmup must be a share of the steps in [0, 1], got {self.width_warmup}")
        for name in ("distill", "self_distill", "isometry"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0) or (name != "isometry" and value > 1):
                raise ConfigError(f"{name} must be a weight in [0, 1] (isometry: >= 0), got {value}")
        if self.distill + self.self_distill > 1:
            raise ConfigError(f"distill + self_distill must be <= 1 (the rest weighs the labels), got "
                              f"{self.distill} + {self.self_distill}")
        if not (math.isfinite(self.distill_temperature) and self.distill_temperature > 0):
            raise ConfigError(f"distill_temperature must be > 0, got {self.distill_temperature}")


class SlotSampler:
    """An endless stream of shuffled indices, reshuffled every pass over the data."""

    def __init__(self, size: int, generator: torch.Generator) -> None:
        self.size, self.gen = size, generator
        self.perm, self.pos = torch.randperm(size, generator=generator), 0

    def take(self, count: int) -> torch.Tensor:
        """The next ``count`` indices, reshuffling at the end of each pass."""
        out = []
        while count:
            if self.pos == self.size:
                self.perm, self.pos = torch.randperm(self.size, generator=self.gen), 0
            k = min(count, self.size - self.pos)
            out.append(self.perm[self.pos : self.pos + k])
            self.pos += k
            count -= k
        return torch.cat(out)


def augment(x: torch.Tensor, gen: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random shifts (zero padding then crop) and horizontal flips of uint8 images [M, C, H, W]."""
    m, c, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (m,), generator=gen).to(dev)
    ox = torch.randint(0, 2 * pad + 1, (m,), generator=gen).to(dev)
    rows = (oy[:, None] + torch.arange(h, device=dev))[:, None, :, None]
    cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, None, :]
    index = torch.arange(m, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None]
    out = padded[index[0], index[1], rows, cols]
    flip = (torch.rand(m, generator=gen) < 0.5).to(dev)
    out[flip] = out[flip].flip(-1)
    return out


def augment_images(x: torch.Tensor, preset: str, gen: torch.Generator) -> torch.Tensor:
    """Apply an augmentation preset (see :data:`AUGMENT_PRESETS`) to uint8 images [M, C, H, W]."""
    if preset == "camera":
        return camera_augment(x, CameraAugment(), gen)
    if preset == "shift":
        return augment(x, gen)
    return x


def slot_loss(model: SuperposedClassifier, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on every slot; logits [B, R, n, K], labels [B, n]."""
    b, r, n, k = logits.shape
    target = labels[:, None, :].expand(b, r, n)
    ce = F.cross_entropy(logits.reshape(-1, k), target.reshape(-1), reduction="none").view(b, r * n)
    weights = getattr(model, "mix_weights", None)  # MixMo: each slot's share of the mixed map
    if weights is not None:
        ce = ce * weights * weights.shape[1]
    return ce.mean()


def distill_loss(logits: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's distillation term on every slot: T^2 * KL(target || softmax(logits / T)).

    ``logits`` [B, R, n, K]; ``target`` [B, n, K], probabilities already softened by T, shared by an image's replicas.
    """
    log_p = F.log_softmax(logits / temperature, dim=-1)
    target = target[:, None].expand_as(log_p)
    kl = (target * (target.clamp_min(1e-12).log() - log_p)).sum(-1)
    return temperature**2 * kl.mean()


def isometry_penalty(model: torch.nn.Module) -> torch.Tensor:
    """Orthogonal-convolution regulariser of ISONet (as MIMONets apply it to their trunk): for each trunk conv W,
    ||W * W - delta||^2 / 2, where W * W is W correlated with itself over channels (the Gram of the convolution
    operator) and delta the identity at the kernel's centre. Zero when the convolution is an isometry."""
    trunk = getattr(model, "trunk", None)
    total = torch.zeros(())
    if trunk is None:
        return total
    for conv in (m for m in trunk.modules() if isinstance(m, torch.nn.Conv2d)):
        w = conv.weight
        if w.shape[1] < w.shape[0]:  # more outputs than inputs: regularise the transpose (rows cannot be orthonormal)
            w = w.transpose(0, 1)
        k = w.shape[-1]
        gram = F.conv2d(w, w, padding=k - 1, stride=conv.stride)
        eye = torch.zeros_like(gram)
        eye[:, :, gram.shape[2] // 2, gram.shape[3] // 2] = torch.eye(w.shape[0], device=w.device, dtype=w.dtype)
        total = total.to(w.device) + ((gram - eye) ** 2).sum() / 2
    return total


def next_width(cfg: TrainConfig, capacity: int, gen: torch.Generator, progress: float = 1.0) -> int:
    """The recipe's dynamic widths: 1 with probability ``single_prob``, else the full capacity. During the first
    ``width_warmup`` share of training (``progress`` in [0, 1]) the width-1 probability falls linearly from 1 to
    ``single_prob``: features are learnt on single images before the model must keep superposed ones apart (the
    MIMOFormer authors' warm-up)."""
    p1 = cfg.single_prob
    if progress < cfg.width_warmup:
        p1 = 1 - (1 - p1) * progress / cfg.width_warmup
    return 1 if torch.rand((), generator=gen).item() < p1 else capacity


def one_cycle(total: int, warmup_share: float = 0.25, start: float = 1 / 25, end: float = 1e-4):
    """The one-cycle learning-rate factor per step: cosine warm-up to 1, cosine annealing to ``end``.

    Defined for any number of steps (a 1-step run uses the peak rate once), unlike OneCycleLR, which
    divides by zero on runs of 4 steps or fewer.
    """
    warm = max(1, round(warmup_share * total)) if total > 1 else 0

    def factor(step: int) -> float:
        if step < warm:
            return start + (1 - start) * (1 - math.cos(math.pi * step / warm)) / 2
        t = (step - warm) / max(1, total - warm)
        return end + (1 - end) * (1 + math.cos(math.pi * min(t, 1.0))) / 2

    return factor


def resolve_device(name: str) -> torch.device:
    """"auto" -> CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError("--device cuda asked for, but torch sees no CUDA GPU: use --device cpu or auto")
    return torch.device(name)


@contextmanager
def _stop_on_ctrl_c() -> Iterator[list[bool]]:
    """Within the block, Ctrl-C sets a flag (checked between steps) instead of raising mid-step."""
    flag = [False]
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame) -> None:
        flag[0] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


class _Batches:
    """Superposed training batches: sampling, augmentation and normalisation, on the training device."""

    def __init__(self, data: ImageSet, model: SuperposedClassifier, cfg: TrainConfig, device: torch.device,
                 gen: torch.Generator) -> None:
        self.images = torch.from_numpy(data.images).to(device)
        self.labels = torch.from_numpy(data.labels).to(device)
        self.cfg, self.gen, self.capacity = cfg, gen, model.config.capacity
        normalize = Normalizer(spec_for(model.config))  # the runtime's constants, applied on the device
        self.scale, self.offset = (torch.from_numpy(v).to(device) for v in (normalize.scale, normalize.offset))
        self.sampler = SlotSampler(len(data), gen)

    def draw(self, random_indices: bool = False, progress: float = 1.0) -> tuple[torch.Tensor, torch.Tensor,
                                                                                  torch.Tensor]:
        """One batch: images [batch, n, C, H, W] (normalised floats), labels [batch, n] and dataset indices;
        ``progress``: the share of training done (for the width warm-up)."""
        n = next_width(self.cfg, self.capacity, self.gen, progress)
        count = self.cfg.batch * n
        if random_indices:
            idx = torch.randint(len(self.labels), (count,), generator=self.gen)
        else:
            idx = self.sampler.take(count)
        idx = idx.to(self.images.device)
        x = augment_images(self.images[idx], self.cfg.augment, self.gen)
        x = x.float() * self.scale + self.offset
        shape = (self.cfg.batch, n)
        return x.view(*shape, *x.shape[1:]), self.labels[idx].view(shape), idx.view(shape)


class _SoftTargets:
    """The distillation terms of a step: a teacher's soft targets and the model's own width-1 prediction."""

    def __init__(self, model: SuperposedClassifier, cfg: TrainConfig, teacher: np.ndarray | None, size: int,
                 device: torch.device) -> None:
        self.model, self.cfg = model, cfg
        if cfg.distill and teacher is None:
            raise DataError("distill > 0 needs the teacher's logits of the training images")
        if teacher is not None and (teacher.ndim != 2 or len(teacher) != size
                                    or teacher.shape[1] != model.config.num_classes):
            raise DataError(f"teacher logits shaped {teacher.shape}, expected [{size}, {model.config.num_classes}]")
        t = cfg.distill_temperature
        self.teacher = (torch.softmax(torch.from_numpy(np.asarray(teacher, np.float32)) / t, -1).to(device)
                        if cfg.distill else None)

    def _mix(self, probs: torch.Tensor, lam: float, perm: torch.Tensor | None) -> torch.Tensor:
        return probs if perm is None else lam * probs + (1 - lam) * probs[perm]

    def loss(self, hard: torch.Tensor, logits: torch.Tensor, x: torch.Tensor, idx: torch.Tensor, lam: float,
             perm: torch.Tensor | None) -> torch.Tensor:
        """The step's loss: the hard-label loss blended with each enabled distillation term by its weight."""
        cfg, t = self.cfg, self.cfg.distill_temperature
        terms = []
        if self.teacher is not None:
            terms.append((cfg.distill, self._mix(self.teacher[idx], lam, perm)))
        n = x.shape[1]
        if cfg.self_distill and n > 1:  # the same (mixed) images, each alone in all slots: no gradient
            with torch.no_grad():
                solo = self.model(x.reshape(-1, 1, *x.shape[2:])).float().mean(1)  # [B*n, 1, K]
            terms.append((cfg.self_distill, torch.softmax(solo.view(x.shape[0], n, -1) / t, -1)))
        weight = sum(w for w, _ in terms)
        if not terms:
            return hard
        return (1 - weight) * hard + sum(w * distill_loss(logits, target, t) for w, target in terms)


@torch.no_grad()
def recalibrate_batchnorm(model: SuperposedClassifier, batches: _Batches, cfg: TrainConfig) -> None:
    """Re-estimate BatchNorm statistics with the final weights ("precise BN").

    The running averages collected during training lag behind weights that move fast at high learning
    rates; an exact average over ``cfg.bn_batches`` fresh batches, drawn with the same width mix and
    augmentation as training, replaces them.
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns or cfg.bn_batches <= 0:
        return
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches below
    model.train()
    done = 0
    with _stop_on_ctrl_c() as interrupted:  # installed before the message, so Ctrl-C after it is always caught
        logger.info("re-estimating BatchNorm statistics on %d batches (Ctrl-C keeps the average so far)",
                    cfg.bn_batches)
        with bar(cfg.bn_batches, "BatchNorm", unit="batch") as progress:
            for _ in range(cfg.bn_batches):
                if interrupted[0] and done:
                    logger.warning("BatchNorm re-estimate stopped after %d of %d batches: that average is kept",
                                   done, cfg.bn_batches)
                    break
                model(batches.draw(random_indices=True)[0])
                done += 1
                progress.update()
    for bn in bns:
        bn.momentum = 0.1
    model.eval()


@dataclass
class _State:
    """Where a run is, as its checkpoint carries it beside the weights, optimizer and generators."""
    step: int
    history: dict
    run_loss: float = 0.0
    run_acc: float = 0.0


def _save_checkpoint(path: Path, model, opt, sched, gen: torch.Generator, sampler: SlotSampler,
                     state: _State) -> None:
    buf = io.BytesIO()
    torch.save(
        {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "step": state.step, "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
            "perm": sampler.perm, "pos": sampler.pos, "history": json.dumps(state.history),
            "running": [state.run_loss, state.run_acc],
        },
        buf,
    )
    atomic_write_bytes(path, buf.getvalue())


def _resume(path: Path, model, opt, sched, gen: torch.Generator, sampler: SlotSampler,
            device: torch.device) -> _State:
    """Load a checkpoint into the model, optimizer, scheduler, generators and sampler; returns its state."""
    saved = torch.load(path, weights_only=True, map_location=device)
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["optimizer"])
    sched.load_state_dict(saved["scheduler"])
    gen.set_state(saved["generator"])
    torch.set_rng_state(saved["torch_rng"])
    sampler.perm, sampler.pos = saved["perm"].cpu(), saved["pos"]
    run_loss, run_acc = saved["running"]
    return _State(saved["step"], json.loads(saved["history"]), run_loss, run_acc)


def _seed_and_place(model: SuperposedClassifier, cfg: TrainConfig) -> tuple[torch.Generator, torch.device]:
    """Seed torch, move the model to the training device; returns the recipe's generator and the device."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return gen, device


def _fix_keys(model: SuperposedClassifier, cfg: TrainConfig) -> None:
    """``learn_keys=False``: fix the binding keys at seeded random unitary values."""
    binding = getattr(model, "binding", None)
    if not hasattr(binding, "fix_unitary"):
        raise ConfigError(f"learn_keys=False needs a model with binding keys (MIMOConv), not {model.config.arch}")
    binding.fix_unitary(torch.Generator().manual_seed(cfg.seed))


def _optimizer(model: SuperposedClassifier, cfg: TrainConfig, total: int):
    """The optimizer (weight decay on weights, not on biases, norms or keys) and its one-cycle schedule."""
    params_decay = [p for name, p in model.named_parameters() if p.dim() > 1 and "keys" not in name]
    params_other = [p for name, p in model.named_parameters() if p.dim() <= 1 or "keys" in name]
    groups = [{"params": params_decay, "weight_decay": cfg.weight_decay}, {"params": params_other, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999))
    else:
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, one_cycle(total))


def _step_loss(model: SuperposedClassifier, targets: _SoftTargets, cfg: TrainConfig, x: torch.Tensor,
               y: torch.Tensor, idx: torch.Tensor, step: int, gen: torch.Generator) -> tuple[torch.Tensor,
                                                                                            torch.Tensor]:
    """The forward pass and loss of one batch (mixup, distillation and regularisers included): (logits, loss)."""
    if cfg.mixup > 0:
        lam = float(np.random.default_rng(cfg.seed + step).beta(cfg.mixup, cfg.mixup))
        perm = torch.randperm(cfg.batch, generator=gen).to(x.device)
        x = lam * x + (1 - lam) * x[perm]
        logits = model(x).float()
        loss = lam * slot_loss(model, logits, y) + (1 - lam) * slot_loss(model, logits, y[perm])
    else:
        lam, perm = 1.0, None
        logits = model(x).float()
        loss = slot_loss(model, logits, y)
    loss = targets.loss(loss, logits, x, idx, lam, perm)
    loss = loss + model.regularizer()
    if cfg.isometry:
        loss = loss + cfg.isometry * isometry_penalty(model)
    return logits, loss


def _train_step(model: SuperposedClassifier, batches: _Batches, targets: _SoftTargets, cfg: TrainConfig, opt,
                sched, gen: torch.Generator, device: torch.device, step: int,
                total: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimisation step on a fresh batch; returns its labels, logits and loss."""
    model.train()
    x, y, idx = batches.draw(progress=step / total)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        logits, loss = _step_loss(model, targets, cfg, x, y, idx, step, gen)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    sched.step()
    return y, logits, loss


def _track(state: _State, y: torch.Tensor, logits: torch.Tensor, loss: torch.Tensor, progress) -> None:
    """Fold the step's loss and accuracy into the running figures shown on the bar; FloatingPointError when the
    loss is no longer finite (the run diverged)."""
    acc = (logits.argmax(-1) == y[:, None, :]).float().mean().item()
    if not math.isfinite(value := loss.item()):
        progress.close()
        raise FloatingPointError(f"training diverged: the loss is {value} at step {state.step}; nothing is "
                                 "saved. Lower --lr (or check the data)")
    state.run_loss = 0.8 * state.run_loss + 0.2 * value if state.step > 1 else value
    state.run_acc = 0.8 * state.run_acc + 0.2 * acc if state.step > 1 else acc
    progress.set_postfix(loss=f"{state.run_loss:.3f}", acc=f"{state.run_acc:.3f}", n=y.shape[1])


def _end_epoch(state: _State, model: SuperposedClassifier, val: ImageSet | None, cfg: TrainConfig,
               steps_per_epoch: int, total: int, start: float) -> None:
    """Record the epoch in the history, with the validation accuracy per width when it is due."""
    history = state.history
    history["train_seconds"] = time.time() - start
    entry = {"step": state.step, "epoch": state.step / steps_per_epoch, "loss": state.run_loss,
             "train_acc": state.run_acc, "seconds": history["train_seconds"]}
    epoch = round(entry["epoch"])
    if val is not None and (state.step == total or (cfg.eval_every and epoch % cfg.eval_every == 0)):
        entry["val"] = {str(k): v for k, v in evaluate(model, val.images, val.labels).items()}
        logger.info(f"epoch {epoch}: loss {state.run_loss:.4f}, " + ", ".join(
            f"n={k} acc {v['accuracy']:.4f}" for k, v in entry["val"].items()))
    history["epochs"].append(entry)


def train(
    model: SuperposedClassifier,
    data: ImageSet,
    cfg: TrainConfig,
    checkpoint: str | Path | None = None,
    val: ImageSet | None = None,
    teacher: np.ndarray | None = None,
) -> dict:
    """Train ``model`` in place; resumes from ``checkpoint`` if it exists. Returns a history dict.

    ``teacher``: a teacher's logits [len(data), classes] for the training images, the soft targets of
    ``cfg.distill``.

    The checkpoint is written every ``cfg.checkpoint_every`` steps, at every epoch's end and when the run is
    interrupted (Ctrl-C: the checkpoint is written, then KeyboardInterrupt propagates); a resumed run
    continues the same batches, learning rate, running loss and history, so its weights equal an
    uninterrupted run's.
    """
    gen, device = _seed_and_place(model, cfg)
    batches = _Batches(data, model, cfg, device, gen)
    targets = _SoftTargets(model, cfg, teacher, len(data), device)
    if not cfg.learn_keys:
        _fix_keys(model, cfg)
    steps_per_epoch = math.ceil(len(data) / (cfg.batch * model.config.capacity))
    total = cfg.epochs * steps_per_epoch
    opt, sched = _optimizer(model, cfg, total)
    state = _State(0, {"config": asdict(cfg), "epochs": []})
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt and ckpt.exists():
        state = _resume(ckpt, model, opt, sched, gen, batches.sampler, device)
        logger.info("resumed from %s at step %d/%d", ckpt, state.step, total)

    def save() -> None:
        if ckpt:
            _save_checkpoint(ckpt, model, opt, sched, gen, batches.sampler, state)

    start = time.time() - state.history.get("train_seconds", 0.0)
    progress = bar(total, "train", initial=state.step)
    with _stop_on_ctrl_c() as interrupted:
        while state.step < total and not interrupted[0]:
            y, logits, loss = _train_step(model, batches, targets, cfg, opt, sched, gen, device, state.step, total)
            state.step += 1
            end_of_epoch = state.step % steps_per_epoch == 0 or state.step == total
            if state.step % 10 == 0 or state.step == 1 or end_of_epoch:  # reading values back waits for the GPU
                _track(state, y, logits, loss, progress)
            progress.update()
            if end_of_epoch:
                _end_epoch(state, model, val, cfg, steps_per_epoch, total, start)
            if end_of_epoch or state.step % cfg.checkpoint_every == 0:
                save()
    progress.close()
    if state.step < total:
        save()
        logger.warning(f"interrupted at step {state.step}/{total}" + (
            f": checkpoint {ckpt} written, run the same command to resume" if ckpt
            else " (no --checkpoint: the work is lost)"))
        raise KeyboardInterrupt
    recalibrate_batchnorm(model, batches, cfg)
    model.to(memory_format=torch.contiguous_format)
    state.history["seconds"] = time.time() - start
    return state.history
