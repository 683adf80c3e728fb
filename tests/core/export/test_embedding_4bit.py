"""4-bit embedding tables in plain ONNX operators: packing, the rewritten graph, and what is left alone."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from lightning_distill.core.export import create_session
from lightning_distill.core.export.embedding_4bit import pack_4bit, quantize_embedding_tables


def test_packing_keeps_every_value_within_half_a_step_of_its_block():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(50, 64)).astype(np.float32) * rng.uniform(0.01, 3.0, size=(50, 1)).astype(np.float32)
    table[3] = 0.0  # a padding row
    packed = pack_4bit(table, 16)
    assert packed.packed.shape == (50, 32) and packed.packed.dtype == np.uint8
    assert packed.scales.shape == (50, 4)
    restored = packed.unpack()
    step = np.repeat(packed.scales, 16, axis=1)
    assert np.all(np.abs(restored - table) <= step / 2 + 1e-6)
    assert np.all(restored[3] == 0.0)
    # the largest value of each block is exact: the scale is its magnitude over 7
    blocks = np.abs(table).reshape(50, 4, 16).argmax(-1)
    rows, cols = np.arange(50)[:, None], np.arange(4)[None, :] * 16 + blocks
    assert np.allclose(restored[rows, cols], table[rows, cols], rtol=1e-6)


def test_packing_refuses_widths_the_blocks_do_not_divide():
    with pytest.raises(ValueError, match="width 40 cannot be cut into blocks of 32"):
        pack_4bit(np.zeros((4, 40), np.float32), 32)
    with pytest.raises(ValueError, match="2-D float table"):
        pack_4bit(np.zeros((4, 8), np.int64), 4)


def _gather_model(table: np.ndarray, ids_rank: int, opset: int = 18, tied: bool = False) -> onnx.ModelProto:
    """ids (int64, rank ``ids_rank``) -> Gather(table) [-> MatMul with the table's transpose when ``tied``]."""
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [None] * ids_rank)
    nodes = [helper.make_node("Gather", ["table", "ids"], ["rows"])]
    out = "rows"
    if tied:  # an output layer reading the same table, as in a language model with tied embeddings
        nodes += [helper.make_node("Transpose", ["table"], ["t"]), helper.make_node("MatMul", ["rows", "t"], ["out"])]
        out = "out"
    graph = helper.make_graph(
        nodes,
        "g",
        [ids],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [None] * (ids_rank + 1))],
        [numpy_helper.from_array(table, "table")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("shape", [(7,), (2, 5), (2, 3, 4)])
def test_rewritten_gather_returns_the_packed_rows_for_indices_of_any_rank(shape, tmp_path):
    rng = np.random.default_rng(1)
    table = rng.normal(size=(30, 32)).astype(np.float32)
    model = _gather_model(table, len(shape))
    report = quantize_embedding_tables(model, 8)
    assert report == {"table": "4-bit"}
    assert not [t.name for t in model.graph.initializer if t.name == "table"]  # the float table is gone
    onnx.checker.check_model(model)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    ids = rng.integers(0, 30, size=shape)
    (rows,) = create_session(path).run(None, {"ids": ids})
    expected = pack_4bit(table, 8).unpack()[ids]
    assert rows.shape == (*shape, 32)
    assert np.allclose(rows, expected, atol=1e-6)
    assert np.abs(rows - table[ids]).max() <= np.abs(table).max() / 14 + 1e-6


def test_tables_that_other_operators_read_and_odd_widths_are_kept_and_reported(tmp_path):
    table = np.ones((10, 8), np.float32)
    tied = _gather_model(table, 1, tied=True)
    assert quantize_embedding_tables(tied, 8) == {"table": "kept: other operators read the table too"}
    odd = _gather_model(np.ones((10, 12), np.float32), 1)
    assert quantize_embedding_tables(odd, 8) == {"table": "kept: width 12 is not a multiple of block_size 8"}
    with pytest.raises(ValueError, match=r"opset >= 11 .* the graph has opset 10"):
        quantize_embedding_tables(_gather_model(table, 1, opset=10), 8)


def test_quantize_onnx_stores_divisible_tables_in_4_bits_and_the_others_in_int8(tmp_path):
    from lightning_distill.core.export import OrtQuantConfig, quantize_onnx

    rng = np.random.default_rng(2)
    shapes = {"words": (200, 32), "odd": (20, 24)}
    tables = {name: rng.normal(size=shape).astype(np.float32) for name, shape in shapes.items()}
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [None, None])
    graph = helper.make_graph(
        [helper.make_node("Gather", [name, "ids"], [f"{name}_rows"]) for name in tables],  # unnamed nodes
        "g",
        [ids],
        [helper.make_tensor_value_info(f"{name}_rows", TensorProto.FLOAT, [None, None, None]) for name in tables],
        [numpy_helper.from_array(table, name) for name, table in tables.items()],
    )
    source = tmp_path / "float.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(source))
    path = quantize_onnx(source, tmp_path / "emb4.onnx", OrtQuantConfig(embedding_bits=4, embedding_block_size=16))
    stored = {t.name: t.data_type for t in onnx.load(str(path)).graph.initializer}
    assert stored["words_packed4"] == TensorProto.UINT8 and "words" not in stored
    odd = [name for name in stored if name.startswith("odd") and stored[name] in (TensorProto.UINT8, TensorProto.INT8)]
    assert odd and "odd" not in stored  # int8, as without embedding_bits
    index = rng.integers(0, 20, size=(2, 5))
    words, odd_rows = create_session(path).run(None, {"ids": index})
    assert np.abs(words - tables["words"][index]).max() <= np.abs(tables["words"]).max() / 14 + 1e-6
    assert np.abs(odd_rows - tables["odd"][index]).max() <= np.abs(tables["odd"]).max() / 100


def test_a_second_pass_graph_inputs_subgraphs_and_width_gathers_are_left_alone():
    table = np.random.default_rng(3).normal(size=(40, 16)).astype(np.float32)
    model = _gather_model(table, 2)
    assert quantize_embedding_tables(model, 8) == {"table": "4-bit"}
    before = model.SerializeToString()
    assert quantize_embedding_tables(model, 8) == {"table_scale": "kept: the scales of a 4-bit table"}
    assert model.SerializeToString() == before  # nothing added twice

    exposed = _gather_model(table, 1)
    exposed.graph.input.append(helper.make_tensor_value_info("table", TensorProto.FLOAT, [40, 16]))
    assert quantize_embedding_tables(exposed, 8) == {"table": "kept: a graph input or output, not a constant"}

    by_width = _gather_model(table, 1)
    by_width.graph.node[0].attribute.append(helper.make_attribute("axis", -1))
    assert quantize_embedding_tables(by_width, 8) == {"table": "kept: gathered along its width (axis 1), not by row"}

    branch = helper.make_graph(  # an If whose branches read the table: a use the rewrite cannot see
        [helper.make_node("Identity", ["table"], ["same"])],
        "branch",
        [],
        [helper.make_tensor_value_info("same", TensorProto.FLOAT, [40, 16])],
    )
    inside = _gather_model(table, 1)
    inside.graph.input.append(helper.make_tensor_value_info("flag", TensorProto.BOOL, []))
    inside.graph.node.append(helper.make_node("If", ["flag"], ["picked"], then_branch=branch, else_branch=branch))
    inside.graph.output.append(helper.make_tensor_value_info("picked", TensorProto.FLOAT, [40, 16]))
    assert quantize_embedding_tables(inside, 8) == {"table": "kept: other operators read the table too"}
