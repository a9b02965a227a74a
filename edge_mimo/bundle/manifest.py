"""The bundle manifest: what a compile produced and how to check it, as a typed, validated :class:`Manifest`.

A bundle directory holds ``manifest.json``, the ONNX graphs, engines where built, ``report.md`` and an
operating-point plot. The manifest (schema version 2) is a JSON object; widths are JSON object keys ("1", "4"):

``schema_version`` (int), ``edge_mimo_version``, ``created`` (UTC ISO time),
``model``: the ModelConfig dict (arch, capacity, in_channels, image_size, num_classes, class_names, mean, std, ...),
``model_sha256``: sha256 of the source weights, ``model_source``: where they were read,
``input``: {``layout``: "B,n,C,H,W", ``dtype``: "float32", ``channels``, ``height``, ``width_px``,
            ``color``: "gray" | "rgb", ``mean``, ``std`` (0..1 units), ``resize``: "center-crop" | "stretch" | "letterbox"},
``output``: {``name``: "logits", ``layout``: "B,R,n,K"} (R = capacity / n replicas),
``widths``: [1, 2, 4],
``target``: the target profile (:class:`~edge_mimo.bundle.target.TargetProfile`),
``artifacts``: {"<n>": {"fp32": {file, sha256}, "int8": {file, sha256, flavour},
                        "engines": [{file, sha256, compute_capability, tensorrt, source, build_seconds}]}},
``quantization``: {method, flavour, tool, per_channel, symmetric_activations, calibration_images,
                   calibration_sha256, calibration_source, cache: {"<n>": status}},
``validation``: {source, images, gate_max_drop, gate_failed: ["<n>"], allowed_drop},
``temperature``: {"<n>": float}, ``uncertainty``: {"<n>": {entropy_threshold, flag_rate, accuracy_kept,
accuracy_flagged}}, ``accuracy``: {"<n>": {fp32, int8, int8_calibrated: {accuracy, nll, ece}, drop_points,
temperature, uncertainty, fp32_max_abs_diff_vs_torch}}, ``macs_per_image``: {"<n>": int},
``versions``: {package: version or null}, ``engines_note``, ``files``: {relpath: sha256} of every file the
runtime may load (engines may be added later by ``edge-mimo build-engines``).

Input contracts (``input.contract``): ``"normalised"`` (the default; the graphs take float32 [B, n, C, H, W], the
runtime resizes, converts and normalises) or ``"crop-uint8"`` (schema 3, ``compile --in-graph``: the graphs take
the crop as uint8 BGR [B, n, S_h, S_w, 3], ``layout`` "B,n,H,W,C", ``dtype`` "uint8", ``crop``: [S_h, S_w],
``crop_factor``: S / model size; resize, colour and normalisation are graph operators). A bundle with the
crop-uint8 contract is written as schema 3, so an edge-mimo that predates it refuses it as too new; a contract
this edge-mimo does not know is refused with :class:`BundleVersionError`.

Schema 1 called the input's pixel width ``width`` (a word kept for the superposition width): such bundles still
load, ``input.width`` read as ``width_px``, and are saved as schema 2.

:meth:`Manifest.load` checks every field's type and range. A damaged field the runtime reads (model, input,
widths, artifacts, files, target, temperature, uncertainty) refuses the bundle (:class:`BundleIntegrityError`
naming the field); a damaged report-only field (:data:`REPORT_FIELDS`) is left out and named in
:attr:`Manifest.damaged` (``edge-mimo verify`` fails on it); a newer schema raises :class:`BundleVersionError`.
Only ``schema_version``, ``model``, ``widths``, ``artifacts``, ``files`` and ``input`` are required (bundles of
early versions of schema 1 lack the rest). Ranges are those a working model can have: a temperature in
[0.01, 100], an input mean in [0, 1] and std in [0.01, 10] (0..1 units), an entropy threshold in [0, 1].
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TypeVar

from ..atomic import atomic_write_bytes
from ..errors import BundleError, BundleIntegrityError, BundleVersionError, ConfigError
from ..models.config import ModelConfig
from .names import OUTPUT_NAME
from .onnx_refs import MalformedGraph, external_tensors
from .target import TargetProfile

MANIFEST_FILE = "manifest.json"
SCHEMA_VERSION = 3  # 3: the crop-uint8 input contract (in-graph preprocessing); others are still written as 2
CONTRACTS = ("normalised", "crop-uint8")
ENGINE_KEYS = ("file", "sha256", "compute_capability", "tensorrt")
REQUIRED = ("model", "widths", "artifacts", "files", "input")
TEMPERATURE_RANGE = (0.01, 100.0)
MEAN_RANGE = (0.0, 1.0)
STD_RANGE = (0.01, 10.0)
RESIZE_MODES = ("center-crop", "stretch", "letterbox")
MAX_MANIFEST_BYTES = 64 << 20
MAX_GRAPH_BYTES = 2 << 30  # protobuf's limit: a larger .onnx needs external data, which bundles never use
MAX_FILE_BYTES = 64 << 30  # a TensorRT plan or timing cache
WIDTH_KEY = re.compile(r"[1-9][0-9]{0,5}")  # a width as a JSON object key

T = TypeVar("T")


class _Damaged(Exception):
    """A field that is missing, of the wrong type or out of range (the message names it)."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in ``chunk``-byte blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _count(v) -> bool:
    return _int(v) and v >= 1


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise _Damaged(msg)


def _in(v, bounds: tuple[float, float]) -> bool:
    return _number(v) and bounds[0] <= v <= bounds[1]


def _optional(v, check: Callable[[object], bool]) -> bool:
    return v is None or check(v)


def _per_width(table: object, key: str, parse: Callable[[object], T], what: str) -> dict[int, T]:
    """{"<n>": value} -> {n: parse(value)}."""
    _need(isinstance(table, dict) and all(isinstance(k, str) and WIDTH_KEY.fullmatch(k) for k in table),
          f"'{key}' must map widths (\"1\", \"4\") to {what}")
    out = {}
    for k, v in table.items():
        try:
            out[int(k)] = parse(v)
        except (_Damaged, KeyError, TypeError) as e:
            raise _Damaged(f"'{key}.{k}' must be {what} ({e})" if str(e) else f"'{key}.{k}' must be {what}") from None
    return out


def _strs(d: dict[int, T]) -> dict[str, T]:
    return {str(k): v for k, v in d.items()}


@dataclass(frozen=True)
class GraphFile:
    """One ONNX graph of the bundle."""

    file: str
    sha256: str
    flavour: str | None = None  # INT8 graphs: the quantization flavour

    @classmethod
    def from_dict(cls, d: object) -> "GraphFile":
        """Parse the JSON form, checking each field (a damaged one is reported by name)."""
        _need(isinstance(d, dict) and isinstance(d.get("file"), str) and isinstance(d.get("sha256"), str)
              and _optional(d.get("flavour"), lambda f: isinstance(f, str)), "a graph needs 'file' and 'sha256'")
        return cls(d["file"], d["sha256"], d.get("flavour"))

    def to_dict(self) -> dict:
        """The JSON form."""
        return {"file": self.file, "sha256": self.sha256, **({"flavour": self.flavour} if self.flavour else {})}


@dataclass(frozen=True)
class EngineFile:
    """A TensorRT plan built for one GPU architecture and TensorRT version."""

    file: str
    sha256: str
    compute_capability: str
    tensorrt: str
    source: str | None = None
    build_seconds: float | None = None

    @classmethod
    def from_dict(cls, d: object) -> "EngineFile":
        """Parse the JSON form, checking each field (a damaged one is reported by name)."""
        _need(isinstance(d, dict) and all(isinstance(d.get(k), str) for k in ENGINE_KEYS)
              and _optional(d.get("source"), lambda s: isinstance(s, str))
              and _optional(d.get("build_seconds"), _number), f"engines must be {{{', '.join(ENGINE_KEYS)}}} entries")
        return cls(*(d[k] for k in ENGINE_KEYS), d.get("source"), d.get("build_seconds"))

    def to_dict(self) -> dict:
        """The JSON form."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass
class WidthArtifacts:
    """The files of one width: FP32 and/or INT8 graph, and the plans built from the INT8 one."""

    fp32: GraphFile | None = None
    int8: GraphFile | None = None
    engines: list[EngineFile] = field(default_factory=list)

    def graph(self, precision: str) -> GraphFile | None:
        """The "fp32" or "int8" graph, or None."""
        return {"fp32": self.fp32, "int8": self.int8}.get(precision)

    def to_dict(self) -> dict:
        """The JSON form."""
        out = {p: g.to_dict() for p, g in (("fp32", self.fp32), ("int8", self.int8)) if g is not None}
        return dict(out, engines=[e.to_dict() for e in self.engines])


@dataclass(frozen=True)
class InputSpec:
    """The input contract: what the model eats and what its graphs take. One type for the manifest's ``input``,
    the runtime's preprocessing and compile (checked here, whoever builds it; :meth:`from_dict` also checks a
    manifest's ranges).

    The model eats ``channels`` x ``height`` x ``width_px`` pixels in ``color`` order, normalised with ``mean`` /
    ``std`` (0..1 units), after the ``resize`` mode has fitted the frame. ``contract`` "normalised": the graphs
    take that float32 tensor [B, n, C, H, W] (the runtime resizes, converts and normalises); "crop-uint8" (in-graph
    preprocessing): they take the uint8 BGR crop of ``crop_factor`` x the model's size [B, n, S_h, S_w, 3].
    (``width`` means the superposition width everywhere in edge-mimo; a size in pixels is ``width_px``.)
    """

    channels: int
    height: int
    width_px: int
    color: str  # "gray" | "rgb"
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: str = "center-crop"
    contract: str = "normalised"
    crop_factor: int | None = None  # crop-uint8 only

    def __post_init__(self) -> None:
        if not (_int(self.channels) and self.channels in (1, 3) and _count(self.height) and _count(self.width_px)):
            raise ConfigError(f"input {self.channels} x {self.height} x {self.width_px} pixels: channels must be "
                              "1 or 3, height and width_px positive integers; fix the manifest")
        if self.color not in ("gray", "rgb"):
            raise ConfigError(f"input colour {self.color!r} is not supported: use 'gray' or 'rgb'")
        if (self.color == "gray") != (self.channels == 1):
            raise ConfigError(f"input colour {self.color!r} does not fit {self.channels} channels: fix the manifest")
        if self.resize not in RESIZE_MODES:
            raise ConfigError(f"resize mode {self.resize!r} is unknown: choose one of {', '.join(RESIZE_MODES)}")
        if len(self.mean) != self.channels or len(self.std) != self.channels or not all(v > 0 for v in self.std):
            raise ConfigError("input mean and std need one value per channel, std > 0: fix the manifest")
        if self.contract not in CONTRACTS:
            raise ConfigError(f"input contract {self.contract!r} is unknown: choose one of {', '.join(CONTRACTS)}")
        if not (_count(self.crop_factor) if self.in_graph else self.crop_factor is None):
            raise ConfigError(f"crop_factor {self.crop_factor!r}: the crop-uint8 contract needs a positive integer, "
                              "the normalised one none")

    @property
    def in_graph(self) -> bool:
        """True when the graphs do the resize, colour conversion and normalisation (contract crop-uint8)."""
        return self.contract == "crop-uint8"

    @property
    def crop(self) -> tuple[int, int] | None:
        """(S_h, S_w): the crop the graphs take (crop-uint8), else None."""
        return (self.crop_factor * self.height, self.crop_factor * self.width_px) if self.in_graph else None

    @property
    def layout(self) -> str:
        """The graphs' input layout."""
        return "B,n,H,W,C" if self.in_graph else "B,n,C,H,W"

    @property
    def dtype(self) -> str:
        """The graphs' input element type."""
        return "uint8" if self.in_graph else "float32"

    @property
    def tensor_shape(self) -> tuple[int, int, int]:
        """The shape of one prepared frame, as the graphs take it: (C, H, W), or (S_h, S_w, 3) for crop-uint8."""
        return (*self.crop, 3) if self.in_graph else (self.channels, self.height, self.width_px)

    def with_crop(self, factor: int) -> "InputSpec":
        """This input as in-graph graphs take it: the crop-uint8 contract, ``factor`` x the model's size."""
        return replace(self, contract="crop-uint8", crop_factor=factor)

    @classmethod
    def from_dict(cls, d: object, schema_version: int = SCHEMA_VERSION) -> "InputSpec":
        """Validate a manifest's ``input`` section; schema 1 named the pixel width ``width``."""
        channels = d.get("channels") if isinstance(d, dict) else None
        width_key = "width" if schema_version < 2 else "width_px"
        _need(_int(channels) and channels in (1, 3) and _count(d.get("height")) and _count(d.get(width_key))
              and all(isinstance(d.get(k), list) and len(d[k]) == channels and all(_number(v) for v in d[k])
                      for k in ("mean", "std")) and all(v > 0 for v in d["std"]),
              f"'input' needs channels (1 or 3), positive height and {width_key}, and mean/std lists (std > 0) per "
              "channel")
        _need(all(_in(v, MEAN_RANGE) for v in d["mean"]) and all(_in(v, STD_RANGE) for v in d["std"]),
              f"'input' mean must lie in {list(MEAN_RANGE)} and std in {list(STD_RANGE)} (0..1 pixel units)")
        color = d.get("color", "gray" if channels == 1 else "rgb")
        _need((color, channels) in (("gray", 1), ("rgb", 3)), "'input.color' must be 'gray' (1 channel) or 'rgb' (3)")
        resize = d.get("resize", "center-crop")
        _need(resize in RESIZE_MODES, f"'input.resize' must be one of {', '.join(RESIZE_MODES)}")
        contract = d.get("contract", "normalised")
        if contract not in CONTRACTS:
            raise BundleVersionError(f"the bundle's input contract {str(contract)[:40]!r} is unknown to this "
                                     f"edge-mimo (it knows {', '.join(CONTRACTS)}): upgrade edge-mimo "
                                     "(`pip install -U edge-mimo`) or compile the bundle with this version")
        if contract == "normalised":
            _need(d.get("layout", "B,n,C,H,W") == "B,n,C,H,W" and d.get("dtype", "float32") == "float32",
                  "'input' must be laid out B,n,C,H,W in float32")
            factor = None
        else:
            factor = d.get("crop_factor")
            _need(schema_version >= 3 and _count(factor) and d.get("layout") == "B,n,H,W,C"
                  and d.get("dtype") == "uint8"
                  and d.get("crop") == [factor * d["height"], factor * d[width_key]],
                  "'input' with contract crop-uint8 needs schema 3, layout B,n,H,W,C, dtype uint8, a positive "
                  "crop_factor and crop = crop_factor x [height, width_px]")
        return cls(channels, d["height"], d[width_key], color, tuple(map(float, d["mean"])),
                   tuple(map(float, d["std"])), resize, contract, factor)

    def to_dict(self) -> dict:
        """The JSON form (schema 2: the pixel width as ``width_px``)."""
        return {"layout": self.layout, "dtype": self.dtype, "channels": self.channels, "height": self.height,
                "width_px": self.width_px, "color": self.color, "mean": list(self.mean), "std": list(self.std),
                "resize": self.resize,
                **({"contract": self.contract, "crop": list(self.crop), "crop_factor": self.crop_factor}
                   if self.in_graph else {})}


@dataclass(frozen=True)
class Metrics:
    """Accuracy, negative log-likelihood and expected calibration error on the validation set."""
    accuracy: float
    nll: float
    ece: float

    @classmethod
    def from_dict(cls, d: object) -> "Metrics":
        """Parse the JSON form, checking each field (a damaged one is reported by name)."""
        _need(isinstance(d, dict) and all(isinstance(d.get(k), (int, float)) and not isinstance(d.get(k), bool)
                                          for k in ("accuracy", "nll", "ece")), "needs accuracy, nll and ece")
        return cls(float(d["accuracy"]), float(d["nll"]), float(d["ece"]))

    def to_dict(self) -> dict:
        """The JSON form."""
        return {"accuracy": self.accuracy, "nll": self.nll, "ece": self.ece}


@dataclass(frozen=True)
class Uncertainty:
    """The ``uncertain`` flag of one width: normalised entropy above ``entropy_threshold``."""

    entropy_threshold: float
    flag_rate: float | None = None
    accuracy_kept: float | None = None
    accuracy_flagged: float | None = None

    @classmethod
    def from_dict(cls, d: object) -> "Uncertainty":
        """Parse the JSON form, checking each field (a damaged one is reported by name)."""
        _need(isinstance(d, dict) and _in(d.get("entropy_threshold"), (0.0, 1.0)),
              "a threshold: {\"entropy_threshold\": 0..1}")
        extra = [d.get(k) for k in ("flag_rate", "accuracy_kept", "accuracy_flagged")]
        _need(all(_optional(v, _number) for v in extra), "rates must be numbers or null")
        return cls(float(d["entropy_threshold"]), *extra)

    def to_dict(self) -> dict:
        """The JSON form."""
        return {"entropy_threshold": self.entropy_threshold, "flag_rate": self.flag_rate,
                "accuracy_kept": self.accuracy_kept, "accuracy_flagged": self.accuracy_flagged}


@dataclass(frozen=True)
class WidthAccuracy:
    """Validation figures of one width (the compile report)."""

    fp32: Metrics
    int8: Metrics
    drop_points: float
    temperature: float
    int8_calibrated: Metrics
    uncertainty: Uncertainty
    fp32_max_abs_diff_vs_torch: float | None = None

    @classmethod
    def from_dict(cls, d: object) -> "WidthAccuracy":
        """Parse the JSON form, checking each field (a damaged one is reported by name)."""
        _need(isinstance(d, dict) and _number(d.get("drop_points")) and _in(d.get("temperature"), TEMPERATURE_RANGE)
              and _optional(d.get("fp32_max_abs_diff_vs_torch"), _number), "a width report")
        return cls(Metrics.from_dict(d.get("fp32")), Metrics.from_dict(d.get("int8")), float(d["drop_points"]),
                   float(d["temperature"]), Metrics.from_dict(d.get("int8_calibrated")),
                   Uncertainty.from_dict(d.get("uncertainty")), d.get("fp32_max_abs_diff_vs_torch"))

    def to_dict(self) -> dict:
        """The JSON form."""
        out = {"fp32": self.fp32.to_dict(), "int8": self.int8.to_dict(), "drop_points": self.drop_points,
               "temperature": self.temperature, "int8_calibrated": self.int8_calibrated.to_dict(),
               "uncertainty": self.uncertainty.to_dict()}
        if self.fp32_max_abs_diff_vs_torch is not None:
            out["fp32_max_abs_diff_vs_torch"] = self.fp32_max_abs_diff_vs_torch
        return out


@dataclass(frozen=True)
class Quantization:
    """How the INT8 graphs were made."""

    method: str
    flavour: str
    tool: str
    calibration_images: int
    per_channel: bool = True
    symmetric_activations: bool = False
    calibration_sha256: str = ""
    calibration_source: str = ""
    cache: dict[int, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: object) -> "Quantization":
        """Parse the JSON form, checking each field (a damaged one is reported by name)."""
        _need(isinstance(d, dict) and all(isinstance(d.get(k), str) for k in ("method", "flavour", "tool"))
              and _int(d.get("calibration_images")) and isinstance(d.get("per_channel", True), bool)
              and isinstance(d.get("symmetric_activations", False), bool)
              and all(isinstance(d.get(k, ""), str) for k in ("calibration_sha256", "calibration_source")),
              "'quantization' needs method, flavour, tool and calibration_images")
        cache = _per_width(d.get("cache", {}), "quantization.cache", lambda v: _need(isinstance(v, str), "") or v,
                           "cache statuses")
        return cls(d["method"], d["flavour"], d["tool"], d["calibration_images"], d.get("per_channel", True),
                   d.get("symmetric_activations", False), d.get("calibration_sha256", ""),
                   d.get("calibration_source", ""), cache)

    def to_dict(self) -> dict:
        """The JSON form."""
        return {"flavour": self.flavour, "method": self.method, "tool": self.tool, "per_channel": self.per_channel,
                "symmetric_activations": self.symmetric_activations, "calibration_images": self.calibration_images,
                "calibration_sha256": self.calibration_sha256, "calibration_source": self.calibration_source,
                "cache": _strs(self.cache)}


@dataclass(frozen=True)
class Validation:
    """The validation set and the accuracy gate's outcome."""

    source: str
    images: int
    gate_max_drop: float
    gate_failed: tuple[int, ...] = ()
    allowed_drop: bool = False

    @classmethod
    def from_dict(cls, d: object) -> "Validation":
        """Parse the JSON form, checking each field (a damaged one is reported by name)."""
        _need(isinstance(d, dict) and isinstance(d.get("source"), str) and _int(d.get("images"))
              and _number(d.get("gate_max_drop")) and isinstance(d.get("allowed_drop", False), bool)
              and isinstance(d.get("gate_failed", []), list)
              and all(isinstance(n, str) and WIDTH_KEY.fullmatch(n) for n in d.get("gate_failed", [])),
              "'validation' needs source, images, gate_max_drop, gate_failed (widths) and allowed_drop")
        return cls(d["source"], d["images"], float(d["gate_max_drop"]),
                   tuple(int(n) for n in d.get("gate_failed", [])), d.get("allowed_drop", False))

    def to_dict(self) -> dict:
        """The JSON form."""
        return {"source": self.source, "images": self.images, "gate_max_drop": self.gate_max_drop,
                "gate_failed": [str(n) for n in self.gate_failed], "allowed_drop": self.allowed_drop}


def _string(v: object) -> str:
    _need(isinstance(v, str), "")
    return v


def _versions(v: object) -> dict[str, str | None]:
    _need(isinstance(v, dict) and all(x is None or isinstance(x, str) for x in v.values()), "")
    return dict(v)


# Fields for people and reports (compile report, bench, `edge-mimo info`), which the runtime never reads. A damaged
# one is left out and named in ``Manifest.damaged`` (and by ``edge-mimo verify``): a robot keeps its camera model
# when a bundle's report is hurt but every file it runs still matches its sha256.
REPORT_FIELDS: dict[str, Callable[[object], object]] = {
    "quantization": Quantization.from_dict, "validation": Validation.from_dict,
    "accuracy": lambda t: _per_width(t, "accuracy", WidthAccuracy.from_dict, "width reports"),
    "macs_per_image": lambda t: _per_width(t, "macs_per_image", lambda v: _need(_count(v), "") or v,
                                           "positive integers"),
    "versions": _versions, "edge_mimo_version": _string, "created": _string, "model_sha256": _string,
    "model_source": _string, "engines_note": _string,
}


@dataclass
class Manifest:
    """A bundle's ``manifest.json``, typed (see the module docstring). Widths are ``int`` keys here."""

    model: ModelConfig
    input: InputSpec
    widths: tuple[int, ...]
    artifacts: dict[int, WidthArtifacts]
    files: dict[str, str]
    schema_version: int = SCHEMA_VERSION
    edge_mimo_version: str | None = None
    created: str | None = None
    model_sha256: str | None = None
    model_source: str | None = None
    target: TargetProfile | None = None
    quantization: Quantization | None = None
    validation: Validation | None = None
    temperature: dict[int, float] = field(default_factory=dict)
    uncertainty: dict[int, Uncertainty] = field(default_factory=dict)
    accuracy: dict[int, WidthAccuracy] = field(default_factory=dict)
    macs_per_image: dict[int, int] = field(default_factory=dict)
    versions: dict[str, str | None] = field(default_factory=dict)
    engines_note: str | None = None
    damaged: tuple[str, ...] = ()  # report-only fields that were malformed and left out (see REPORT_FIELDS)

    # -- reading -------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, bundle: str | Path) -> "Manifest":
        """Read and validate ``bundle/manifest.json``; every problem is a :class:`BundleError` naming the fix."""
        if not isinstance(bundle, (str, os.PathLike)):
            raise BundleError(f"a bundle is a directory path, not a {type(bundle).__name__}: pass the bundle's "
                              "directory")
        if "\x00" in str(bundle):
            raise BundleError(f"the bundle path {str(bundle)[:80]!r} holds a NUL byte: pass the bundle's directory")
        path = Path(bundle) / MANIFEST_FILE
        try:
            found = path.is_file()
        except OSError as e:  # a name too long, a folder we may not enter
            raise BundleError(f"cannot open the bundle {str(bundle)[:80]!r} ({e.strerror or e}): pass the "
                              "bundle's directory") from None
        if not found:
            raise BundleError(f"{bundle} is not a bundle (no {MANIFEST_FILE}): "
                              "pass a directory written by `edge-mimo compile`")
        check_links(bundle)
        try:
            if path.stat().st_size > MAX_MANIFEST_BYTES:
                raise BundleIntegrityError(f"{path} is larger than {MAX_MANIFEST_BYTES >> 20} MiB: it is no "
                                           "edge-mimo manifest, compile the bundle again")
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise BundleError(f"cannot read {path} ({e.strerror or e}): check the file's permissions and the "
                              "disk, or copy the whole bundle again") from e
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError) as e:  # JSONDecodeError, bad UTF-8, huge integers; deep nesting
            reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)
            raise BundleIntegrityError(f"{path} is not valid JSON ({reason}): the bundle is damaged, "
                                       "compile it again") from None
        return cls.from_dict(doc, str(path))

    @classmethod
    def from_dict(cls, doc: object, source: str = MANIFEST_FILE) -> "Manifest":
        """Validate a parsed manifest document (see :meth:`load`)."""
        if not isinstance(doc, dict):
            raise BundleIntegrityError(f"{source} is not a JSON object: the bundle is damaged, compile it again")
        version = doc.get("schema_version")
        if not (_int(version) and version >= 1):
            raise BundleIntegrityError(f"{source} has no valid schema_version (a positive integer, got "
                                       f"{str(version)[:20]!r}): the bundle is damaged, compile it again")
        if version > SCHEMA_VERSION:
            raise BundleVersionError(
                f"{Path(source).parent} uses bundle schema {version}, this edge-mimo reads up to {SCHEMA_VERSION}: "
                "upgrade edge-mimo (`pip install -U edge-mimo`) or compile the bundle with this version"
            )
        for key in REQUIRED:
            if key not in doc:
                raise BundleIntegrityError(f"{source} lacks '{key}': the bundle is damaged, compile it again")
        try:
            return cls._parse(doc, version)
        except _Damaged as e:
            raise BundleIntegrityError(f"{source}: {e}: the bundle is damaged, compile it again") from None

    @classmethod
    def _parse(cls, m: dict, version: int) -> "Manifest":
        model = _model(m["model"])
        widths = m["widths"]
        _need(isinstance(widths, list) and widths and all(_count(n) and model.capacity % n == 0 for n in widths)
              and len(set(widths)) == len(widths),
              "'widths' must be a non-empty list of distinct positive integers dividing the capacity")
        files = m["files"]
        _need(isinstance(files, dict) and all(isinstance(k, str) and _relpath(k) and isinstance(v, str) and len(v) == 64
                                              for k, v in files.items()),
              "'files' must map relative paths (none outside the bundle) to sha256 hex digests")
        arts = m["artifacts"]
        _need(isinstance(arts, dict), "'artifacts' must map widths to their files")
        artifacts = {}
        for n in widths:
            artifacts[n] = _width_artifacts(arts.get(str(n)), n)
            for art in (artifacts[n].fp32, artifacts[n].int8, *artifacts[n].engines):
                _need(art is None or files.get(art.file) == art.sha256,
                      f"'artifacts.{n}' names {art and art.file!r}, which 'files' does not list with the same sha256")
        inp = InputSpec.from_dict(m["input"], version)
        _need(inp.channels == model.in_channels or "in_channels" not in m["model"],
              "'input.channels' and 'model.in_channels' disagree")
        target = m.get("target")
        if target is not None or "target" in m:
            try:
                target = TargetProfile.from_dict(target, "in the manifest")
            except ConfigError as e:
                raise _Damaged(f"'target': {e}") from None
        used = {key: parse(m[key]) for key, parse in (
            ("temperature", lambda t: _per_width(
                t, "temperature", lambda v: _need(_in(v, TEMPERATURE_RANGE), "") or float(v),
                f"positive numbers in {list(TEMPERATURE_RANGE)}")),
            ("uncertainty", lambda t: _per_width(t, "uncertainty", Uncertainty.from_dict, "thresholds")),
        ) if key in m}
        report, damaged = {}, []
        for key, parse in REPORT_FIELDS.items():  # the runtime never reads these: damage is noted, not fatal
            if key in m:
                try:
                    report[key] = parse(m[key])
                except _Damaged:
                    damaged.append(key)
        return cls(model=model, input=inp, widths=tuple(widths), artifacts=artifacts, files=dict(files),
                   target=target, damaged=tuple(damaged), **used, **report)

    # -- writing -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The JSON document (schema :data:`SCHEMA_VERSION`), widths as string keys."""
        out = {"schema_version": 3 if self.input.in_graph else min(self.schema_version, 2), "edge_mimo_version": self.edge_mimo_version,
               "created": self.created, "model": self.model.to_dict(), "model_sha256": self.model_sha256,
               "model_source": self.model_source, "input": self.input.to_dict(),
               "output": {"name": OUTPUT_NAME, "layout": "B,R,n,K"}, "widths": list(self.widths),
               "target": self.target.to_dict() if self.target else None,
               "artifacts": {str(n): a.to_dict() for n, a in self.artifacts.items()},
               "quantization": self.quantization.to_dict() if self.quantization else None,
               "validation": self.validation.to_dict() if self.validation else None,
               "temperature": _strs(self.temperature),
               "uncertainty": {str(n): u.to_dict() for n, u in self.uncertainty.items()},
               "accuracy": {str(n): a.to_dict() for n, a in self.accuracy.items()},
               "macs_per_image": _strs(self.macs_per_image), "versions": self.versions, "files": self.files,
               "engines_note": self.engines_note}
        return {k: v for k, v in out.items() if v is not None}

    def to_json(self) -> str:
        """The JSON text written as ``manifest.json``."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def save(self, bundle: str | Path) -> None:
        """Write ``bundle/manifest.json`` atomically (temporary file and rename)."""
        atomic_write_bytes(Path(bundle) / MANIFEST_FILE, self.to_json().encode())

    # -- questions the loaders ask -------------------------------------------------------------------------
    @property
    def class_names(self) -> tuple[str, ...]:
        """The class names, or '0', '1', ... when the model has none."""
        return self.model.class_names or tuple(str(i) for i in range(self.model.num_classes))

    @property
    def backend(self) -> str:
        """The target's backend ("onnxruntime" for bundles without a target)."""
        return self.target.backend if self.target else "onnxruntime"


def _relpath(p: str) -> bool:
    """A file name inside the bundle: relative, no NUL, no '..', of a sane length."""
    return 0 < len(p) <= 1024 and "\x00" not in p and not p.startswith("/") and ".." not in Path(p).parts


def _model(d: object) -> ModelConfig:
    _need(isinstance(d, dict) and _count(d.get("capacity")) and _count(d.get("num_classes")),
          "'model' needs positive integers 'capacity' and 'num_classes'")
    names = d.get("class_names")
    _need(names is None or (isinstance(names, list) and len(names) == d["num_classes"]
                            and all(isinstance(c, str) for c in names)),
          "'model.class_names' must be a list of num_classes strings")
    for key in ("in_channels", "image_size", "stem_channels", "depth", "widen", "base_width", "patch_size", "embed_dim",
                "heads", "random_features", "layers", "mlp_ratio"):
        _need(key not in d or _count(d[key]), f"'model.{key}' must be a positive integer")
    for key in ("mean", "std"):
        _need(key not in d or (isinstance(d[key], list) and all(_number(v) for v in d[key])),
              f"'model.{key}' must be a list of numbers")
    try:
        return ModelConfig.from_dict({k: v for k, v in d.items() if v is not None})
    except (ValueError, TypeError) as e:
        raise _Damaged(f"'model': {e}") from None


def _width_artifacts(entry: object, n: int) -> WidthArtifacts:
    try:
        _need(isinstance(entry, dict) and ("fp32" in entry or "int8" in entry), "")
        graphs = {p: GraphFile.from_dict(entry[p]) for p in ("fp32", "int8") if p in entry}
    except _Damaged:
        raise _Damaged(f"'artifacts.{n}' must hold an 'fp32' or 'int8' graph with 'file' and 'sha256'") from None
    engines = entry.get("engines", [])
    try:
        _need(isinstance(engines, list), "")
        parsed = [EngineFile.from_dict(e) for e in engines]
    except _Damaged:
        raise _Damaged(f"'artifacts.{n}.engines' must be a list of {{{', '.join(ENGINE_KEYS)}}} entries") from None
    return WidthArtifacts(graphs.get("fp32"), graphs.get("int8"), parsed)


def is_bundle(directory: str | Path) -> bool:
    """Whether ``directory`` holds an edge-mimo manifest (of any schema version): a ``manifest.json`` of a web
    app or a browser extension is not one, so such a directory is never replaced by a compile."""
    try:
        doc = json.loads((Path(directory) / MANIFEST_FILE).read_bytes())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and _int(doc.get("schema_version")) and all(k in doc for k in REQUIRED)


def load_manifest(bundle: str | Path) -> Manifest:
    """:meth:`Manifest.load`."""
    return Manifest.load(bundle)


def _inside(root: Path, path: Path, shown: str) -> Path:
    """``path`` resolved (links followed), refused unless it lies inside ``root`` (itself resolved)."""
    try:
        real = path.resolve(strict=True)
    except FileNotFoundError:
        real = path.resolve()
    except (OSError, RuntimeError) as e:  # a link loop (RuntimeError before Python 3.13), a name too long
        raise BundleIntegrityError(f"{shown} in the bundle cannot be resolved ({e}): remove it, or copy the whole "
                                   "bundle again") from None
    if root != real and root not in real.parents:
        raise BundleIntegrityError(f"{shown} leads outside the bundle (to {real}): refusing to read it; "
                                   "copy the bundle with its files (cp -rL) instead of links")
    return real


def check_links(bundle: str | Path) -> None:
    """Refuse a bundle holding a symbolic link that leads outside it, or a link loop (nothing outside a bundle
    is ever read or copied from it)."""
    root = Path(bundle).resolve()
    for folder, dirs, names in os.walk(root):  # links to folders are listed, never followed
        for name in dirs + names:
            path = Path(folder, name)
            if path.is_symlink():
                _inside(root, path, repr(str(path.relative_to(root))))


def artifact_path(bundle: str | Path, relpath: str) -> Path:
    """Resolve a manifest path inside the bundle, refusing paths that escape it (by name or by link)."""
    if not isinstance(relpath, str) or "\x00" in relpath or len(relpath) > 1024:
        raise BundleIntegrityError(f"manifest names {str(relpath)[:80]!r}, which is no file name: the bundle is "
                                   "damaged, compile it again")
    root = Path(bundle).resolve()
    path = _inside(root, root / relpath, f"manifest path {relpath!r}")
    if path == root:
        raise BundleIntegrityError(f"manifest names {relpath!r}, the bundle itself, not a file in it: refusing "
                                   "to read outside the bundle's files; compile it again")
    return path


def verify_artifacts(bundle: str | Path, manifest: Manifest, only: Iterable[str] | None = None) -> None:
    """Check the sha256 of every file the manifest lists (or only those in ``only``)."""
    wanted = None if only is None else set(only)
    for rel, digest in manifest.files.items():
        if wanted is not None and rel not in wanted:
            continue
        path = artifact_path(bundle, rel)
        if not path.is_file():
            raise BundleIntegrityError(f"{bundle} is missing {rel}: copy the whole bundle again or recompile it")
        graph = rel.endswith(".onnx")
        try:
            size = path.stat().st_size
            if size > (MAX_GRAPH_BYTES if graph else MAX_FILE_BYTES):
                raise BundleIntegrityError(f"{rel} in {bundle} is {size >> 20} MiB, more than any file edge-mimo "
                                           "writes: it was replaced, copy the whole bundle again or recompile it")
            if graph:
                with open(path, "rb") as f:
                    data = f.read()
                actual = hashlib.sha256(data).hexdigest()
            else:
                actual = sha256_file(path)
        except OSError as e:
            raise BundleError(f"cannot read {rel} in {bundle} ({e.strerror or e}): check its permissions, or copy "
                              "the whole bundle again") from e
        if actual != digest:
            raise BundleIntegrityError(
                f"{rel} in {bundle} does not match its sha256 in the manifest (truncated or altered): "
                "copy the whole bundle again or recompile it"
            )
        if graph:
            _check_self_contained(bundle, rel, data)


def _check_self_contained(bundle: str | Path, rel: str, data: bytes) -> None:
    """Refuse a graph whose tensors live in external files (bytes the manifest does not hash)."""
    try:
        external = external_tensors(data)
    except MalformedGraph as e:  # refused, not left to a backend: one whose parser reads it anyway could follow refs
        raise BundleIntegrityError(
            f"{rel} in {bundle} is no ONNX graph as edge-mimo writes them ({e}), although the manifest hashes it: "
            "recompile the bundle") from None
    if external:
        raise BundleIntegrityError(
            f"{rel} in {bundle} reads {len(external)} tensor(s) ({', '.join(external[:3])}) from external data files "
            "that the manifest does not hash: edge-mimo cannot load it safely; recompile the bundle (edge-mimo "
            "writes self-contained graphs)")
