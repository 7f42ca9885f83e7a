"""Expose a piper voice's per-phoneme durations without the `onnx` package.

Piper's VITS voices compute how many audio frames each phoneme id gets (a `Ceil` node, `w_ceil`)
but do not output it. piper-tts can mark it as an output with the `onnx` package (17 MB, an extra);
this does the same edit on the protobuf bytes directly: find the single `Ceil` node's output name
and append a `ValueInfoProto` with that name to the graph's outputs. onnxruntime infers its type.

Wire format used: ModelProto.graph = field 7; GraphProto.node = 1, GraphProto.output = 12;
NodeProto.output = 2, NodeProto.op_type = 4; ValueInfoProto.name = 1.
"""

from __future__ import annotations

from collections.abc import Iterator


def _varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int, int, int]]:
    """Yield (field number, wire type, start of field, start of payload, end of field)."""
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, end = _varint(buf, pos)
            payload = pos
        elif wire == 1:
            payload, end = pos, pos + 8
        elif wire == 2:
            length, payload = _varint(buf, pos)
            end = payload + length
        elif wire == 5:
            payload, end = pos, pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, start, payload, end
        pos = end


def _len_field(number: int, payload: bytes) -> bytes:
    return _encode_varint((number << 3) | 2) + _encode_varint(len(payload)) + payload


def add_duration_output(model: bytes) -> bytes:
    """Return `model` with the `Ceil` node's output added as a graph output (the durations)."""
    view = memoryview(model)
    graph_span = None
    for number, wire, start, payload, end in _fields(view):
        if number == 7 and wire == 2:
            graph_span = (start, payload, end)
    if graph_span is None:
        raise ValueError("no graph in model")
    g_start, g_payload, g_end = graph_span
    graph = view[g_payload:g_end]
    ceil_outputs: list[bytes] = []
    outputs: list[bytes] = []
    for number, wire, _, payload, end in _fields(graph):
        if number == 1 and wire == 2:  # NodeProto
            node = graph[payload:end]
            op_type, node_outputs = b"", []
            for n, w, _, p, e in _fields(node):
                if n == 4 and w == 2:
                    op_type = bytes(node[p:e])
                elif n == 2 and w == 2:
                    node_outputs.append(bytes(node[p:e]))
            if op_type == b"Ceil":
                ceil_outputs.extend(node_outputs)
        elif number == 12 and wire == 2:  # ValueInfoProto
            for n, w, _, p, e in _fields(graph[payload:end]):
                if n == 1 and w == 2:
                    outputs.append(bytes(graph[payload:end][p:e]))
    if len(ceil_outputs) != 1:
        raise ValueError(f"expected one Ceil output, found {len(ceil_outputs)}")
    if ceil_outputs[0] in outputs:
        return model  # already patched
    new_graph = bytes(graph) + _len_field(12, _len_field(1, ceil_outputs[0]))
    return bytes(view[:g_start]) + _len_field(7, new_graph) + bytes(view[g_end:])
