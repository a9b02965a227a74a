"""The MIMONets training recipe: independent images per slot, dynamic widths, CE on every slot.

Each step holds ``batch`` superposed groups. With probability ``single_prob`` a step runs at width 1
(every image in all N slots), otherwise at width N with N independent random images per group.
SGD with Nesterov momentum and a one-cycle learning rate; optional mixup.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..atomic import atomic_write_bytes
from ..datasets import ImageSet
from ..models.base import SuperposedClassifier
from .evaluate import evaluate, normalize

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 15
    batch: int = 64  # superposed groups per step
    lr: float = 0.1
    weight_decay: float = 5e-4
    single_prob: float = 0.2
    mixup: float = 0.0  # Beta(alpha, alpha) mixup; 0 disables
    augment: bool = True  # random 2-pixel shifts and horizontal flips
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    bn_batches: int = 100  # batches for the final BatchNorm re-estimate (0: keep the running averages)


class SlotSampler:
    """An endless stream of shuffled indices, reshuffled every pass over the data."""

    def __init__(self, size: int, generator: torch.Generator) -> None:
        self.size, self.gen = size, generator
        self.perm, self.pos = torch.randperm(size, generator=generator), 0

    def take(self, count: int) -> torch.Tensor:
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
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (m,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (m,), generator=gen)
    rows = (oy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (ox[:, None] + torch.arange(w))[:, None, None, :]
    out = padded[torch.arange(m)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
    flip = torch.rand(m, generator=gen) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def slot_loss(model: SuperposedClassifier, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on every slot; logits [B, R, n, K], labels [B, n]."""
    b, r, n, k = logits.shape
    target = labels[:, None, :].expand(b, r, n)
    ce = F.cross_entropy(logits.reshape(-1, k), target.reshape(-1), reduction="none").view(b, r * n)
    weights = getattr(model, "mix_weights", None)  # MixMo: each slot's share of the mixed map
    if weights is not None:
        ce = ce * weights * weights.shape[1]
    return ce.mean()


def next_width(cfg: TrainConfig, capacity: int, gen: torch.Generator) -> int:
    """The recipe's dynamic widths: 1 with probability ``single_prob``, else the full capacity."""
    return 1 if torch.rand((), generator=gen).item() < cfg.single_prob else capacity


@torch.no_grad()
def recalibrate_batchnorm(model: SuperposedClassifier, images: torch.Tensor, cfg: TrainConfig,
                          gen: torch.Generator) -> None:
    """Re-estimate BatchNorm statistics with the final weights ("precise BN").

    The running averages collected during training lag behind weights that move fast at high learning
    rates; an exact average over ``cfg.bn_batches`` fresh batches, drawn with the same width mix as
    training, replaces them.
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns or cfg.bn_batches <= 0:
        return
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches below
    model.train()
    mc = model.config
    for _ in range(cfg.bn_batches):
        n = next_width(cfg, mc.capacity, gen)
        idx = torch.randint(len(images), (cfg.batch * n,), generator=gen)
        x = normalize(images[idx], mc.mean, mc.std).view(cfg.batch, n, *images.shape[1:])
        model(x)
    for bn in bns:
        bn.momentum = 0.1
    model.eval()


def _save_checkpoint(path: Path, model, opt, sched, step: int, gen: torch.Generator, sampler: SlotSampler) -> None:
    import io

    buf = io.BytesIO()
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "step": step,
            "generator": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "perm": sampler.perm,
            "pos": sampler.pos,
        },
        buf,
    )
    atomic_write_bytes(path, buf.getvalue())


def train(
    model: SuperposedClassifier,
    data: ImageSet,
    cfg: TrainConfig,
    checkpoint: str | Path | None = None,
    val: ImageSet | None = None,
) -> dict:
    """Train ``model`` in place; resumes from ``checkpoint`` if it exists. Returns a history dict.

    With ``val``, each epoch ends with an evaluation at every width, logged and kept in the history.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    mc = model.config
    images = torch.from_numpy(data.images)
    labels = torch.from_numpy(data.labels)
    n_full = mc.capacity
    steps_per_epoch = math.ceil(len(data) / (cfg.batch * n_full))
    total = cfg.epochs * steps_per_epoch

    params_decay = [p for name, p in model.named_parameters() if p.dim() > 1 and "keys" not in name]
    params_other = [p for name, p in model.named_parameters() if p.dim() <= 1 or "keys" in name]
    opt = torch.optim.SGD(
        [{"params": params_decay, "weight_decay": cfg.weight_decay}, {"params": params_other, "weight_decay": 0.0}],
        lr=cfg.lr, momentum=0.9, nesterov=True,
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.25)
    sampler = SlotSampler(len(data), gen)
    step = 0
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt and ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        sampler.perm, sampler.pos, step = state["perm"], state["pos"], state["step"]
        logger.info("resumed from %s at step %d/%d", ckpt, step, total)

    history = {"config": asdict(cfg), "epochs": []}
    start = time.time()
    bar = tqdm(total=total, initial=step, desc="train", unit="step", dynamic_ncols=True)
    run_loss, run_acc = 0.0, 0.0
    while step < total:
        model.train()
        n = next_width(cfg, n_full, gen)
        idx = sampler.take(cfg.batch * n)
        x = images[idx]
        if cfg.augment:
            x = augment(x, gen)
        x = normalize(x, mc.mean, mc.std).view(cfg.batch, n, *x.shape[1:])
        y = labels[idx].view(cfg.batch, n)
        if cfg.mixup > 0:
            lam = float(np.random.default_rng(cfg.seed + step).beta(cfg.mixup, cfg.mixup))
            perm = torch.randperm(cfg.batch, generator=gen)
            logits = model(lam * x + (1 - lam) * x[perm])
            loss = lam * slot_loss(model, logits, y) + (1 - lam) * slot_loss(model, logits, y[perm])
        else:
            logits = model(x)
            loss = slot_loss(model, logits, y)
        loss = loss + model.regularizer()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        acc = (logits.argmax(-1) == y[:, None, :]).float().mean().item()
        run_loss = 0.98 * run_loss + 0.02 * loss.item() if step > 1 else loss.item()
        run_acc = 0.98 * run_acc + 0.02 * acc if step > 1 else acc
        bar.set_postfix(loss=f"{run_loss:.3f}", acc=f"{run_acc:.3f}", n=n)
        bar.update()
        if step % steps_per_epoch == 0 or step == total:
            entry = {"step": step, "epoch": step / steps_per_epoch, "loss": run_loss, "train_acc": run_acc,
                     "seconds": time.time() - start}
            if val is not None:
                entry["val"] = {str(k): v for k, v in evaluate(model, val.images, val.labels).items()}
                logger.info("epoch %.0f: %s", entry["epoch"], ", ".join(
                    f"n={k} acc {v['accuracy']:.4f}" for k, v in entry["val"].items()))
            history["epochs"].append(entry)
            if ckpt:
                _save_checkpoint(ckpt, model, opt, sched, step, gen, sampler)
    bar.close()
    recalibrate_batchnorm(model, images, cfg, gen)
    history["seconds"] = time.time() - start
    return history
