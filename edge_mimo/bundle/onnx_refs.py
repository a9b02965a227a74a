"""Which tensors of an ONNX file keep their bytes in external files, read from the protobuf wire format.

ONNX Runtime and TensorRT's parser read an external-data file named inside the graph (relative to the graph, or
to the working directory for a graph loaded from bytes): bytes no manifest hash covers. The runtime refuses such
graphs; this walk needs no ``onnx`` package (the lean runtime has none).
"""

from __future__ import annotations

# message -> {field number: message type of that field}; only the paths that can hold a TensorProto.
_FIELDS: dict[str, dict[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "function": {7: "node", 11: "attribute"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {},
}
TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION, TENSOR_NAME = 13, 14, 8
MAX_DEPTH = 64


class MalformedGraph(ValueError):
    """The bytes are no ONNX protobuf."""


def _varint(data: bytes, i: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= end or shift > 63:
            raise MalformedGraph("truncated varint")
        b = data[i]
        value |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            return value, i
        shift += 7


def _walk(data: bytes, start: int, end: int, kind: str, depth: int, found: list[str]) -> None:
    if depth > MAX_DEPTH:
        raise MalformedGraph("nested too deeply")
    children = _FIELDS[kind]
    i, name, external = start, "", False
    while i < end:
        key, i = _varint(data, i, end)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i, end)
            external |= kind == "tensor" and field == TENSOR_DATA_LOCATION and value == 1
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            size, i = _varint(data, i, end)
            if i + size > end:
                raise MalformedGraph("a field runs past its message")
            if field in children:
                _walk(data, i, i + size, children[field], depth + 1, found)
            elif kind == "tensor" and field == TENSOR_EXTERNAL_DATA:
                external = True
            elif kind == "tensor" and field == TENSOR_NAME:
                name = data[i : i + size].decode("utf-8", "replace")
            i += size
        else:
            raise MalformedGraph(f"wire type {wire}")
    if i != end:
        raise MalformedGraph("a field runs past its message")
    if external:
        found.append(name or "?")


def external_tensors(data: bytes) -> list[str]:
    """Names of the tensors of the ONNX model ``data`` whose bytes live in external files (empty: self-contained).

    Raises :class:`MalformedGraph` when ``data`` is not a protobuf message.
    """
    found: list[str] = []
    _walk(data, 0, len(data), "model", 0, found)
    return found
