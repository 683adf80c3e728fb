"""4-bit embedding tables in plain ONNX operators: a gather of packed rows, unpacked and scaled after the gather.

Each row of a table ``W`` (vocabulary x width) is cut into blocks of ``block_size`` values along the width; a block
keeps one scale ``s = max|w| / 7`` and its values as ``q = round(w / s)`` in ``[-7, 7]``, stored as the nibble
``q + 8``. Byte ``j`` of a row holds column ``j`` in its low nibble and column ``j + width / 2`` in its high one, so
unpacking is one ``Mod`` (by 16), one ``BitShift`` and one ``Concat`` along the last axis, whatever the rank of the
indices. The graph reads ``W[ids]`` as::

    packed = Gather(W_packed4, ids)                    # uint8, (..., width / 2)
    q = Concat(packed % 16, packed >> 4) - 8           # (..., width), as float
    W[ids] ~= q * MatMul(Gather(W_scale, ids), widen)  # block scales widened to one per column

Only the gathered rows are unpacked (a few thousand values for a query), which on CPUs without its fast kernels
(AVX2) is faster at batch 1 than ONNX Runtime's ``GatherBlockQuantized`` (used before) for a BERT's three tables,
and every operator is a standard one (opset 11), so any runtime runs the graph. Block-wise round-to-nearest as in
GPTQ's baseline (Frantar et al., 2023) and ONNX Runtime's ``MatMulNBits`` quantizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

PACKED_SUFFIX = "_packed4"
SCALE_SUFFIX = "_scale"
WIDEN_SUFFIX = "_scale_widen"  # blocks x width, 1 where a column belongs to a block: one scale per column by MatMul
MIN_OPSET = 11  # BitShift; the low nibble is Mod(byte, 16), which opset 10 has


@dataclass(frozen=True)
class PackedTable:
    """A table stored in 4 bits: ``packed`` (rows x width/2, uint8) and ``scales`` (rows x blocks, float32)."""

    packed: np.ndarray
    scales: np.ndarray
    block_size: int

    @property
    def width(self) -> int:
        return 2 * self.packed.shape[1]

    def unpack(self) -> np.ndarray:
        """The float table the graph reads (what ``W`` becomes after quantization)."""
        q = np.concatenate([self.packed & 15, self.packed >> 4], axis=1).astype(np.float32) - 8.0
        return q * np.repeat(self.scales, self.block_size, axis=1)


def pack_4bit(table: np.ndarray, block_size: int) -> PackedTable:
    """``table`` (rows x width) quantized block-wise to 4 bits (see the module docstring).

    Raises:
        ValueError: not a 2-D float table, or a width that is not a multiple of ``block_size`` and of 2.
    """
    if table.ndim != 2 or not np.issubdtype(table.dtype, np.floating):
        raise ValueError(f"pack_4bit needs a 2-D float table; got shape {table.shape} of {table.dtype}")
    rows, width = table.shape
    if width % block_size or width % 2:
        raise ValueError(f"a table of width {width} cannot be cut into blocks of {block_size} values")
    blocks = table.astype(np.float32).reshape(rows, width // block_size, block_size)
    scales = (np.abs(blocks).max(axis=2) / 7.0).astype(np.float32)
    safe = np.where(scales == 0, 1.0, scales)[..., None]  # an all-zero block (the padding row) stays zero
    q = np.clip(np.rint(blocks / safe), -7, 7).astype(np.int16).reshape(rows, width) + 8
    half = width // 2
    packed = (q[:, :half] | (q[:, half:] << 4)).astype(np.uint8)
    return PackedTable(packed, scales, block_size)


def _subgraph_inputs(node: Any) -> set[str]:
    """Every name the subgraphs of ``node`` (``If``/``Loop``/``Scan`` bodies) read, at any depth."""
    import onnx

    graphs = [a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH]
    graphs += [g for a in node.attribute if a.type == onnx.AttributeProto.GRAPHS for g in a.graphs]
    names: set[str] = set()
    for graph in graphs:
        for inner in graph.node:
            names.update(inner.input)
            names |= _subgraph_inputs(inner)
    return names


def _gather_tables(graph: Any) -> dict[str, tuple[list[Any], str | None]]:
    """Float 2-D initializers read by a ``Gather``: the gathers, and why the table must stay as it is (or None)."""
    import onnx

    floats = [t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) == 2]
    names = {t.name for t in graph.initializer}
    uses: dict[str, list[tuple[Any, int]]] = {}
    in_subgraphs: set[str] = set()
    for node in graph.node:
        for position, name in enumerate(node.input):
            uses.setdefault(name, []).append((node, position))
        in_subgraphs |= _subgraph_inputs(node)
    exposed = {v.name for v in graph.input} | {v.name for v in graph.output}
    tables: dict[str, tuple[list[Any], str | None]] = {}
    for name in floats:
        nodes = uses.get(name, [])
        gathers = [node for node, position in nodes if node.op_type == "Gather" and position == 0]
        if not gathers:
            continue
        axes = {next((a.i for a in n.attribute if a.name == "axis"), 0) % 2 for n in gathers}
        reason = None
        if name.endswith(SCALE_SUFFIX) and name[: -len(SCALE_SUFFIX)] + PACKED_SUFFIX in names:
            reason = "kept: the scales of a 4-bit table"
        elif name in exposed:
            reason = "kept: a graph input or output, not a constant"
        elif len(gathers) < len(nodes) or name in in_subgraphs:
            reason = "kept: other operators read the table too"
        elif axes != {0}:
            reason = "kept: gathered along its width (axis 1), not by row"
        tables[name] = (gathers, reason)
    return tables


def embedding_plan(model: Any, block_size: int) -> dict[str, str]:
    """What :func:`quantize_embedding_tables` would do with each float 2-D initializer that a ``Gather`` reads.

    Returns:
        ``"4-bit"``, or why the table is kept as it is: other operators read it too (tied weights, a subgraph), a
        width that is not a multiple of ``block_size``, a table gathered along its width, a graph input or output,
        or the scales of a table already stored in 4 bits (the function can run on its own output).
    """
    return _plan(model.graph, _gather_tables(model.graph), block_size)


def _plan(graph: Any, tables: dict[str, tuple[list[Any], str | None]], block_size: int) -> dict[str, str]:
    plan = {}
    widths = {t.name: t.dims[1] for t in graph.initializer if len(t.dims) == 2}
    for name, (_, reason) in tables.items():
        width = widths[name]
        if reason is None and (width % block_size or width % 2):
            reason = f"kept: width {width} is not a multiple of block_size {block_size}"
        plan[name] = reason or "4-bit"
    return plan


def four_bit_gathers(model: Any, block_size: int) -> list[str]:
    """Names of the ``Gather`` nodes that read a table :func:`quantize_embedding_tables` stores in 4 bits (for an
    int8 quantizer to leave alone)."""
    plan = embedding_plan(model, block_size)
    return [n.name for n in model.graph.node if n.op_type == "Gather" and plan.get(n.input[0]) == "4-bit"]


def quantize_embedding_tables(model: Any, block_size: int) -> dict[str, str]:
    """Store every embedding table of ``model`` (an ``onnx.ModelProto``, changed in place) in 4 bits.

    A table is a float 2-D initializer read only by ``Gather`` along axis 0; each such gather becomes the unpacking
    shown in the module docstring, writing the same output name.

    Returns:
        :func:`embedding_plan`: ``"4-bit"`` or why a table was kept as it is.

    Raises:
        ValueError: the graph's default-domain opset is below 11 (``BitShift``); export with ``opset=11`` or later.
    """
    from onnx import numpy_helper

    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        raise ValueError(
            f"4-bit embeddings need ONNX opset >= {MIN_OPSET} (BitShift); the graph has opset {opset}: export it "
            f"with OnnxExportConfig(opset={MIN_OPSET}) or later"
        )
    tables = _gather_tables(graph)
    plan = _plan(graph, tables, block_size)
    initializers = {t.name: t for t in graph.initializer}
    nodes_for: dict[int, list[Any]] = {}
    widen_matrices: dict[str, Any] = {}
    for name in [n for n, what in plan.items() if what == "4-bit"]:
        packed = pack_4bit(numpy_helper.to_array(initializers[name]), block_size)
        widen = f"emb4_widen_{packed.width}x{block_size}{WIDEN_SUFFIX}"  # shared by the tables of that width
        if widen not in widen_matrices:
            blocks = np.arange(packed.width) // block_size
            matrix = (blocks[None, :] == np.arange(packed.scales.shape[1])[:, None]).astype(np.float32)
            widen_matrices[widen] = numpy_helper.from_array(matrix, widen)
        graph.initializer.remove(initializers[name])
        graph.initializer.extend(
            [
                numpy_helper.from_array(packed.packed, name + PACKED_SUFFIX),
                numpy_helper.from_array(packed.scales, name + SCALE_SUFFIX),
            ]
        )
        for i, gather in enumerate(tables[name][0]):
            nodes_for[id(gather)] = _unpacking_nodes(name, widen, f"{name}_emb4_{i}", gather)
    if nodes_for:
        constants = [
            numpy_helper.from_array(np.array(16, np.uint8), "emb4_sixteen"),
            numpy_helper.from_array(np.array(4, np.uint8), "emb4_shift"),
            numpy_helper.from_array(np.array(8.0, np.float32), "emb4_offset"),
        ]
        # shared by every table, and by an earlier pass on the same graph
        graph.initializer.extend(t for t in [*constants, *widen_matrices.values()] if t.name not in initializers)
        rewritten = []
        for node in graph.node:
            rewritten.extend(nodes_for.get(id(node), [node]))
        del graph.node[:]
        graph.node.extend(rewritten)
    return plan


def _unpacking_nodes(table: str, widen: str, prefix: str, gather: Any) -> list[Any]:
    """The nodes replacing ``Gather(table, ids) -> out`` (see the module docstring)."""
    import onnx
    from onnx import helper

    ids, out = gather.input[1], gather.output[0]

    def t(name: str) -> str:
        return f"{prefix}/{name}"

    return [
        helper.make_node("Gather", [table + PACKED_SUFFIX, ids], [t("packed")], name=t("gather_packed")),
        helper.make_node("Mod", [t("packed"), "emb4_sixteen"], [t("low")], name=t("low")),
        helper.make_node("BitShift", [t("packed"), "emb4_shift"], [t("high")], name=t("high"), direction="RIGHT"),
        helper.make_node("Concat", [t("low"), t("high")], [t("nibbles")], name=t("concat"), axis=-1),
        helper.make_node("Cast", [t("nibbles")], [t("float")], name=t("cast"), to=onnx.TensorProto.FLOAT),
        helper.make_node("Sub", [t("float"), "emb4_offset"], [t("q")], name=t("centre")),
        helper.make_node("Gather", [table + SCALE_SUFFIX, ids], [t("scales")], name=t("gather_scales")),
        helper.make_node("MatMul", [t("scales"), widen], [t("scale")], name=t("widen_scales")),
        helper.make_node("Mul", [t("q"), t("scale")], [out], name=t("dequantize")),
    ]
