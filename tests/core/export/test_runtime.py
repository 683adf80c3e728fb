"""ONNX Runtime: graph optimization, int8 quantization (dynamic and calibrated static), sessions and predictors."""

import numpy as np
import pytest
import torch
from export_fixtures import accuracy, bert_logits

from lightning_distill.core.benchmark import benchmark, file_size_mb
from lightning_distill.core.export import (
    OnnxExportConfig,
    OrtQuantConfig,
    OrtSessionConfig,
    check_parity,
    create_session,
    export_onnx,
    onnx_predictor,
    optimize_onnx,
    quantize_onnx,
    read_label_names,
)

# The shared fixtures (trained MNIST MLP, tiny BERT, their batches) live in export_fixtures.py.
pytest_plugins = ["export_fixtures"]


@pytest.fixture(scope="module")
def mlp_onnx(trained_mlp, mnist, tmp_path_factory):
    path = tmp_path_factory.mktemp("mlp") / "mlp.onnx"
    return export_onnx(trained_mlp, OnnxExportConfig(), mnist["test_x"][:4], path, label_names=list("0123456789"))


@pytest.fixture(scope="module")
def bert_onnx(tiny_bert, bert_batches, tmp_path_factory):
    inputs = {k: v for k, v in bert_batches[0].items() if k != "labels"}
    return export_onnx(tiny_bert, OnnxExportConfig(), inputs, tmp_path_factory.mktemp("bert") / "bert.onnx")


def test_optimized_graph_keeps_outputs_and_labels(mlp_onnx, trained_mlp, calibration, tmp_path):
    optimized = optimize_onnx(mlp_onnx, tmp_path / "mlp.opt.onnx")
    assert check_parity(optimized, trained_mlp, calibration).max_abs_diff <= 1e-4
    assert read_label_names(optimized) == read_label_names(mlp_onnx)


def test_bert_optimized_graph_matches_pytorch(bert_onnx, tiny_bert, bert_batches, tmp_path):
    optimized = optimize_onnx(bert_onnx, tmp_path / "bert.opt.onnx")
    assert check_parity(optimized, tiny_bert, bert_batches).max_abs_diff <= 1e-4


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_mlp_int8_is_smaller_and_close_to_float(mode, mlp_onnx, trained_mlp, calibration, mnist, tmp_path):
    data = calibration if mode == "static" else None
    path = quantize_onnx(mlp_onnx, tmp_path / f"mlp.{mode}.onnx", OrtQuantConfig(mode=mode), calibration_data=data)
    assert file_size_mb(path) <= 0.35 * file_size_mb(mlp_onnx)
    assert read_label_names(path) == read_label_names(mlp_onnx)
    logits = torch.as_tensor(onnx_predictor(create_session(path))(mnist["test_x"]))
    expected = trained_mlp(mnist["test_x"]).detach()
    assert float((logits.argmax(-1) == expected.argmax(-1)).float().mean()) >= 0.97
    onnx_accuracy = float((logits.argmax(-1) == mnist["test_y"]).float().mean())
    assert accuracy(trained_mlp, mnist["test_x"], mnist["test_y"]) - onnx_accuracy <= 0.015


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_bert_int8_is_close_to_float(mode, bert_onnx, tiny_bert, bert_batches, tmp_path):
    data = bert_batches if mode == "static" else None
    path = quantize_onnx(bert_onnx, tmp_path / f"bert.{mode}.onnx", OrtQuantConfig(mode=mode), calibration_data=data)
    predict = onnx_predictor(create_session(path))
    for batch in bert_batches:
        logits = predict({k: v for k, v in batch.items() if k != "labels"})
        assert np.abs(logits - bert_logits(tiny_bert, batch).numpy()).max() <= 0.05


def test_bert_4bit_embeddings_are_smaller_than_int8_and_close_to_float(bert_onnx, tiny_bert, bert_batches, tmp_path):
    import onnx

    from lightning_distill.core.benchmark import onnx_parameter_count

    int8 = quantize_onnx(bert_onnx, tmp_path / "bert.int8.onnx", OrtQuantConfig())
    config = OrtQuantConfig(embedding_bits=4, embedding_block_size=16)
    int4 = quantize_onnx(bert_onnx, tmp_path / "bert.emb4.onnx", config)
    graph = onnx.load(str(int4)).graph
    float_tables = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT and len(i.dims) == 2}
    gathers = [n for n in graph.node if n.op_type == "Gather"]
    # the word-embedding table (100 x 32) is read as packed 4-bit rows, and no gather reads a float table any more
    assert any(n.input[0].endswith("word_embeddings.weight_packed4") for n in gathers)
    assert not [n.name for n in gathers if n.input[0] in float_tables and not n.input[0].endswith("_scale")]
    assert {n.domain for n in graph.node} <= {"", "com.microsoft"}
    assert not [n.op_type for n in graph.node if n.op_type == "GatherBlockQuantized"]
    assert any(n.op_type == "MatMulInteger" for n in graph.node)  # the rest is still int8
    assert file_size_mb(int4) < file_size_mb(int8)
    # the same parameters, stored smaller: block scales are not counted as parameters
    assert onnx_parameter_count(int4) == onnx_parameter_count(int8)
    assert read_label_names(int4) == read_label_names(bert_onnx)
    predict = onnx_predictor(create_session(int4))
    for batch in bert_batches:
        logits = predict({k: v for k, v in batch.items() if k != "labels"})
        assert np.abs(logits - bert_logits(tiny_bert, batch).numpy()).max() <= 0.05


def test_static_onnx_quantization_without_calibration_data_is_refused(mlp_onnx, tmp_path):
    with pytest.raises(ValueError, match=r"OrtQuantConfig\(mode='static'\) needs calibration_data"):
        quantize_onnx(mlp_onnx, tmp_path / "q.onnx", OrtQuantConfig(mode="static"))
    with pytest.raises(ValueError, match="calibration_data yielded no batches"):
        quantize_onnx(mlp_onnx, tmp_path / "q.onnx", OrtQuantConfig(mode="static"), calibration_data=[])
    with pytest.raises(ValueError, match=r"calibration_data is only used by OrtQuantConfig\(mode='static'\)"):
        quantize_onnx(mlp_onnx, tmp_path / "q.onnx", OrtQuantConfig(), calibration_data=[torch.zeros(1, 784)])


def test_session_threads_are_explicit_and_predictor_fits_the_benchmark(mlp_onnx, mnist):
    session = create_session(mlp_onnx, OrtSessionConfig(intra_op_num_threads=1, inter_op_num_threads=1))
    options = session.get_session_options()
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    result = benchmark(
        onnx_predictor(session),
        mnist["test_x"][:50],
        mnist["test_y"][:50],
        name="onnx",
        size_mb=file_size_mb(mlp_onnx),
        warmup=1,
        iterations=3,
        throughput_iterations=2,
    )
    assert result.accuracy > 0.7 and result.latency_ms_p50 > 0


def test_bad_session_and_quantization_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="intra_op_num_threads must be an int >= 0; got -1"):
        OrtSessionConfig(intra_op_num_threads=-1)
    with pytest.raises(ValueError, match="optimization_level must be one of"):
        OrtSessionConfig(optimization_level="max")
    with pytest.raises(ValueError, match="mode must be 'dynamic' or 'static'; got 'int4'"):
        OrtQuantConfig(mode="int4")
    with pytest.raises(ValueError, match="embedding_bits must be 4 or None; got 8"):
        OrtQuantConfig(embedding_bits=8)
    with pytest.raises(ValueError, match="embedding_bits needs mode='dynamic'"):
        OrtQuantConfig(mode="static", embedding_bits=4)
    with pytest.raises(ValueError, match="embedding_block_size must be a power of two >= 16; got 24"):
        OrtQuantConfig(embedding_bits=4, embedding_block_size=24)
    with pytest.raises(FileNotFoundError, match="no ONNX model at"):
        create_session(tmp_path / "missing.onnx")


def test_predictor_names_missing_inputs(bert_onnx):
    predict = onnx_predictor(create_session(bert_onnx))
    with pytest.raises(KeyError, match=r"needs inputs \['attention_mask', 'token_type_ids'\]"):
        predict({"input_ids": torch.ones(1, 3, dtype=torch.long)})


def test_quantizing_a_dynamo_bert_leaves_the_working_directory_alone(tiny_bert, bert_batches, tmp_path, monkeypatch):
    # ORT's symbolic shape inference gives up on a dynamo-exported BERT and saves its partial model into the working
    # directory; quantize_onnx must neither change directory (process-wide state) nor leave those files behind.
    import os

    inputs = {k: v for k, v in bert_batches[0].items() if k != "labels"}
    path = export_onnx(tiny_bert, OnnxExportConfig(dynamo=True), inputs, tmp_path / "export" / "bert.onnx")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "mine.data").write_text("a user's file")
    seen = []
    monkeypatch.setattr(os, "chdir", lambda *a: seen.append(a))
    out = quantize_onnx(path, tmp_path / "out" / "bert.int8.onnx", OrtQuantConfig())
    assert seen == [] and sorted(p.name for p in work.iterdir()) == ["mine.data"]
    logits = onnx_predictor(create_session(out))(inputs)
    assert np.abs(logits - bert_logits(tiny_bert, bert_batches[0]).numpy()).max() <= 0.05
