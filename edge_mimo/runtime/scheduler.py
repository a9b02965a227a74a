"""Which frames share which superposed pass, and how to read the passes back per frame.

The cost of a call is the number of superposed groups (one group = one pass of the network, whatever its
width). A group of width n holds n slot positions, each read back as N/n replica predictions. The plan:

1. The policy sets how many replicas every frame should get at least: ``throughput`` 1, ``balanced`` 2,
   ``robust`` N (the full ensemble). That caps the distinct frames per group at the widest bundle width w
   with N/w >= that number, and fixes the number of groups G = ceil(frames / w).
2. Frames are split, in order, into G groups of near-equal size k (sizes differ by at most one).
3. Each group runs at the narrowest bundle width n >= k; its n - k spare positions repeat the group's frames
   round-robin, so spare capacity becomes extra replicas at no extra cost.

Examples on an N=4 model with widths 1, 2, 4 (throughput): 2 frames -> one width-2 group, 2 replicas each;
3 frames -> one width-4 group, the first frame in two positions; 9 frames -> three width-4 groups of 3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

POLICIES = ("throughput", "balanced", "robust")


def is_integer(v: object) -> bool:
    """A whole number (Python or numpy), not a bool."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def is_real(v: object) -> bool:
    """A finite real number (Python or numpy), not a bool."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) \
        and math.isfinite(v)


@dataclass(frozen=True)
class InferOptions:
    """How one :meth:`Runtime.infer_many` call schedules its frames, checked here for every caller (the runtime,
    the live loop, the servers): ``policy`` (one of :data:`POLICIES`), ``budget_ms`` (a cap on the predicted
    inference time: a finite number > 0, or None for none), ``width`` (force one width, or None; the bundle
    checks that it has it)."""

    policy: str = "throughput"
    budget_ms: float | None = None
    width: int | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.policy, str) and self.policy in POLICIES):
            raise ConfigError(f"unknown policy {self.policy!r}: choose one of {', '.join(POLICIES)}")
        if self.budget_ms is not None and not (is_real(self.budget_ms) and self.budget_ms > 0):
            raise ConfigError(f"budget_ms must be a number > 0 and finite (got {self.budget_ms!r}): give "
                              "milliseconds, or None for no budget")
        if self.width is not None and not is_integer(self.width):
            raise ConfigError(f"width {self.width!r} is not an integer: pass one of the bundle's widths")


@dataclass(frozen=True)
class Group:
    """One superposed pass: ``frames[p]`` is the frame index at slot position p (len == width)."""

    width: int
    frames: tuple[int, ...]


@dataclass(frozen=True)
class Plan:
    """The superposed passes for one call: its groups, on a model of ``capacity`` slots."""
    groups: tuple[Group, ...]
    capacity: int

    @property
    def cost(self) -> int:
        """The number of passes."""
        return len(self.groups)

    def replicas(self, count: int) -> np.ndarray:
        """Replica predictions each of ``count`` frames receives."""
        out = np.zeros(count, dtype=np.int64)
        for g in self.groups:
            np.add.at(out, list(g.frames), self.capacity // g.width)
        return out

    def by_width(self) -> dict[int, list[Group]]:
        """The groups by width, in plan order (one backend call per width)."""
        out: dict[int, list[Group]] = {}
        for g in self.groups:
            out.setdefault(g.width, []).append(g)
        return out


def min_replicas(policy: str, capacity: int) -> int:
    """The replicas per frame a policy asks for (ConfigError for an unknown one, as :class:`InferOptions` says)."""
    return {"throughput": 1, "balanced": min(2, capacity), "robust": capacity}[InferOptions(policy).policy]


def plan(count: int, capacity: int, widths: list[int] | tuple[int, ...], replicas: int = 1,
         width: int | None = None) -> Plan:
    """Plan ``count`` frames on a model of ``capacity`` N with the bundle's ``widths``.

    ``replicas``: the minimum replicas per frame wanted (see the module docstring); ``width`` forces every
    group to that width (frames packed ``width`` per group, spare positions of the last group repeat its frames).
    """
    widths = sorted(set(widths))
    if count < 0:
        raise ValueError("count must be >= 0")
    if width is not None:
        if width not in widths:
            raise ConfigError(f"width {width} is not in this bundle (widths {widths}): pick one of them")
        per_group = width
    else:
        fitting = [w for w in widths if capacity // w >= replicas]
        per_group = max(fitting) if fitting else min(widths)
    if count == 0:
        return Plan((), capacity)
    if width is not None:
        sizes = [width] * (count // width) + ([count % width] if count % width else [])
    else:
        n_groups = -(-count // per_group)
        base, extra = divmod(count, n_groups)
        sizes = [base + 1] * extra + [base] * (n_groups - extra)
    groups, start = [], 0
    for k in sizes:
        n = width if width is not None else min(w for w in widths if w >= k)
        members = list(range(start, start + k))
        groups.append(Group(n, tuple(members[p % k] for p in range(n))))
        start += k
    return Plan(tuple(groups), capacity)


def gather(plan_: Plan, outputs: dict[int, np.ndarray], count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-width outputs {n: [G_n, R_n, n, K]} (groups in ``plan_.by_width()`` order) -> per replica rows.

    Returns (logits [rows, K], frame index [rows]) sorted by frame index, stably: rows of one frame are
    contiguous, and every planned frame appears (each exactly as many times as its replicas).
    """
    rows, owners = [], []
    for n, groups in plan_.by_width().items():
        out = outputs[n]
        g, r, _, k = out.shape
        rows.append(out.transpose(0, 2, 1, 3).reshape(g * n * r, k))
        frame_ids = np.asarray([grp.frames for grp in groups], dtype=np.int64)  # [G, n]
        owners.append(np.repeat(frame_ids.reshape(-1), r))
    logits, owner = np.concatenate(rows), np.concatenate(owners)
    order = np.argsort(owner, kind="stable")
    logits, owner = logits[order], owner[order]
    if count and not np.array_equal(np.unique(owner), np.arange(count)):
        raise RuntimeError("internal error: a planned frame got no prediction")
    return logits, owner
