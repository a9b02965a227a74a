"""A deployment target profile (``targets/*.toml``, and the ``target`` section of a bundle's manifest). Torch-free.

Keys: ``name`` (letters, digits, ``_ . -``: it names the bundle directory), ``description``, ``backend``
("onnxruntime" | "tensorrt"), ``flavour`` ("cpu" | "tensorrt"), ``widths``, ``compute_capability``,
``tensorrt_version``, ``jetpack``, ``[onnxruntime]`` ``threads`` and, for TensorRT targets, ``[tensorrt]``
``workspace_mib``, ``batch = {min, opt, max}``, ``builder_optimization_level``, ``dla_core``, ``gpu_fallback``;
``[preprocess]`` ``in_graph`` (compile the resize, colour conversion and normalisation into the graphs, which then
take the uint8 crop; ``edge-mimo compile --in-graph/--no-in-graph`` overrides) and ``crop_factor`` (the crop is
that many times the model's size; 17 takes a 476-pixel crop for a 28-pixel model, from a 480-line camera).
Unknown keys are refused (a typo would otherwise be ignored silently).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigError

BACKENDS = ("onnxruntime", "tensorrt")
FLAVOURS = ("cpu", "tensorrt")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
DEFAULT_WIDTHS = (1, 2, 4)
MAX_CROP_FACTOR = 64  # the largest in-graph crop: factor x the model's size (64: 1792 pixels for 28)


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class _Checker:
    def __init__(self, source: str) -> None:
        self.source = source

    def need(self, cond: bool, msg: str) -> None:
        if not cond:
            raise ConfigError(f"target profile {self.source}: {msg}")

    def known(self, table: dict, keys: tuple[str, ...], where: str) -> None:
        unknown = sorted(map(str, set(table) - set(keys)))
        self.need(not unknown, f"unknown key(s) {unknown}{where}: known keys are {', '.join(keys)}")


@dataclass(frozen=True)
class BatchRange:
    """TensorRT optimization profile over superposed groups per call."""

    min: int
    opt: int
    max: int


@dataclass(frozen=True)
class TensorRTSettings:
    """Engine builder settings of a TensorRT target."""

    workspace_mib: int
    batch: BatchRange
    builder_optimization_level: int = 3
    dla_core: int = -1
    gpu_fallback: bool = True

    KEYS = ("workspace_mib", "batch", "builder_optimization_level", "dla_core", "gpu_fallback")


@dataclass(frozen=True)
class TargetProfile:
    """One deployment target, validated (see the module docstring for the keys)."""

    name: str
    backend: str
    flavour: str
    description: str = ""
    widths: tuple[int, ...] = DEFAULT_WIDTHS
    compute_capability: str | None = None
    tensorrt_version: str | None = None
    jetpack: str | None = None
    threads: int | None = None  # [onnxruntime] threads
    tensorrt: TensorRTSettings | None = None
    in_graph: bool = False  # [preprocess] in_graph: resize/colour/normalise as graph operators (uint8 crop input)
    crop_factor: int = 17  # [preprocess] crop_factor: the graphs take crop_factor x the model's size (17: 476 for 28)

    KEYS = ("name", "description", "backend", "flavour", "widths", "compute_capability", "tensorrt_version",
            "jetpack", "onnxruntime", "tensorrt", "preprocess")

    @classmethod
    def from_dict(cls, data: object, source: str) -> "TargetProfile":
        """Validate a parsed profile; ConfigError names the field and the fix."""
        c = _Checker(source)
        c.need(isinstance(data, dict), "must be a table of keys (name, backend, flavour, ...)")
        c.known(data, cls.KEYS, "")
        name = data.get("name")
        c.need(isinstance(name, str) and NAME.fullmatch(name) is not None,
               f"'name' {name!r} must be 1-64 letters, digits, '_', '.' or '-' starting with a letter or digit "
               "(it names the bundle directory)")
        c.need(data.get("backend") in BACKENDS, f"'backend' must be one of {', '.join(BACKENDS)}")
        c.need(data.get("flavour") in FLAVOURS, f"'flavour' must be one of {', '.join(FLAVOURS)}")
        widths = data.get("widths", list(DEFAULT_WIDTHS))
        c.need(isinstance(widths, list) and widths and all(_int(w) and w > 0 for w in widths)
               and len(set(widths)) == len(widths),
               "'widths' must be a list of distinct positive integers, e.g. [1, 2, 4]")
        for key in ("description", "compute_capability", "tensorrt_version", "jetpack"):
            c.need(isinstance(data.get(key, ""), str), f"'{key}' must be a string")
        ort = data.get("onnxruntime", {})
        c.need(isinstance(ort, dict), "[onnxruntime] must be a table")
        c.known(ort, ("threads",), " in [onnxruntime]")
        threads = ort.get("threads")
        c.need(threads is None or (_int(threads) and threads >= 0), "[onnxruntime] threads must be an integer >= 0")
        pre = data.get("preprocess", {})
        c.need(isinstance(pre, dict), "[preprocess] must be a table")
        c.known(pre, ("in_graph", "crop_factor"), " in [preprocess]")
        in_graph, factor = pre.get("in_graph", False), pre.get("crop_factor", 17)
        c.need(isinstance(in_graph, bool), "[preprocess] in_graph must be true or false")
        c.need(_int(factor) and 1 <= factor <= MAX_CROP_FACTOR,
               f"[preprocess] crop_factor must be an integer in 1..{MAX_CROP_FACTOR}")
        trt = None
        if data["backend"] == "tensorrt":
            c.need(data["flavour"] == "tensorrt", "a TensorRT target needs flavour = \"tensorrt\" (symmetric Q/DQ)")
            trt = _tensorrt(data.get("tensorrt", {}), c)
        return cls(name=name, backend=data["backend"], flavour=data["flavour"],
                   description=data.get("description", ""), widths=tuple(widths),
                   compute_capability=data.get("compute_capability"), tensorrt_version=data.get("tensorrt_version"),
                   jetpack=data.get("jetpack"), threads=threads, tensorrt=trt, in_graph=in_graph,
                   crop_factor=factor)

    def to_dict(self) -> dict:
        """The profile as its TOML reads (and as a manifest stores it)."""
        out: dict = {"name": self.name, "description": self.description, "backend": self.backend,
                     "flavour": self.flavour, "widths": list(self.widths)}
        for key in ("compute_capability", "tensorrt_version", "jetpack"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.threads is not None:
            out["onnxruntime"] = {"threads": self.threads}
        if self.in_graph:  # only then: an edge-mimo without [preprocess] still reads the bundles that lack it
            out["preprocess"] = {"in_graph": True, "crop_factor": self.crop_factor}
        if self.tensorrt is not None:
            t = self.tensorrt
            out["tensorrt"] = {"workspace_mib": t.workspace_mib,
                               "batch": {"min": t.batch.min, "opt": t.batch.opt, "max": t.batch.max},
                               "builder_optimization_level": t.builder_optimization_level, "dla_core": t.dla_core,
                               "gpu_fallback": t.gpu_fallback}
        return out


def _tensorrt(trt: object, c: _Checker) -> TensorRTSettings:
    c.need(isinstance(trt, dict), "[tensorrt] must be a table")
    c.known(trt, TensorRTSettings.KEYS, " in [tensorrt]")
    batch = trt.get("batch", {})
    c.need(isinstance(batch, dict) and set(batch) == {"min", "opt", "max"} and all(_int(v) for v in batch.values()),
           "[tensorrt] batch needs integers min, opt and max, e.g. { min = 1, opt = 1, max = 8 }")
    c.need(1 <= batch["min"] <= batch["opt"] <= batch["max"], "[tensorrt] batch needs 1 <= min <= opt <= max")
    c.need(_int(trt.get("workspace_mib")) and trt["workspace_mib"] > 0,
           "[tensorrt] workspace_mib must be a positive integer (MiB)")
    level = trt.get("builder_optimization_level", 3)
    c.need(_int(level) and 0 <= level <= 5, "[tensorrt] builder_optimization_level must be an integer 0..5")
    dla = trt.get("dla_core", -1)
    c.need(_int(dla) and dla >= -1, "[tensorrt] dla_core must be an integer (-1: GPU only)")
    fallback = trt.get("gpu_fallback", True)
    c.need(isinstance(fallback, bool), "[tensorrt] gpu_fallback must be true or false")
    return TensorRTSettings(trt["workspace_mib"], BatchRange(batch["min"], batch["opt"], batch["max"]), level, dla,
                            fallback)
