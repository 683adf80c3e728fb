"""TextEncoder: the Rust tokenizer called directly gives exactly what the tokenizer's own call gives."""

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import SHARED
from tiny_text import write_tokenizer
from transformers import AutoTokenizer

from lightning_distill.core.text_encoding import PROBES, TextEncoder

MINILM = SHARED / "models" / "minilm-l6-h384-uncased"
CLINC_TEST = SHARED / "data" / "clinc_oos" / "plus" / "test.parquet"


def _equal(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


@pytest.fixture(scope="module")
def minilm():
    return AutoTokenizer.from_pretrained(str(MINILM))


@pytest.mark.parametrize("tensors", ["pt", "np"])
def test_minilm_encodings_equal_the_tokenizer_call_on_clinc_texts(minilm, tensors):
    encoder = TextEncoder(minilm, 32, tensors)
    assert encoder.uses_rust
    texts = pd.read_parquet(CLINC_TEST).text.tolist()[::11] + list(PROBES) + ["", "   ", "ÀÉÎ õü ß 😀"]
    for text in texts:  # one query at a time, as served
        got = encoder(text)
        assert _equal(got, encoder.reference(text)), text
        assert isinstance(got["input_ids"], torch.Tensor if tensors == "pt" else np.ndarray)
        assert got["input_ids"].dtype in (torch.int64, np.int64)
    for start in range(0, len(texts), 7):  # batches padded to their longest text
        assert _equal(encoder(texts[start : start + 7]), encoder.reference(texts[start : start + 7]))
    assert encoder(PROBES[2])["input_ids"].shape == (1, 32)


def test_left_padding_and_truncation_no_max_length_and_a_pickled_encoder_agree_too(minilm):
    import copy

    left = copy.deepcopy(minilm)
    left.padding_side = "left"
    left.truncation_side = "left"  # keeps the end of a long text: the probe's words differ, so a wrong side shows
    for tokenizer, max_length in ((left, 16), (minilm, None)):
        encoder = TextEncoder(tokenizer, max_length, "np")
        assert encoder.uses_rust
        batch = ["a short one", PROBES[0], PROBES[2]]
        assert _equal(encoder(batch), encoder.reference(batch))
    restored = pickle.loads(pickle.dumps(TextEncoder(left, 16, "np")))
    assert restored.uses_rust and _equal(restored(PROBES[0]), restored.reference(PROBES[0]))


def test_a_tokenizer_whose_call_differs_from_its_rust_tokenizer_goes_through_the_call(tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(write_tokenizer(tmp_path / "tok"))

    class Prefixing(type(tokenizer)):
        """A tokenizer with a Python-side step (here: every text gets a prefix) its Rust tokenizer does not know."""

        def __call__(self, text, *args, **kwargs):
            text = [f"the {t}" for t in text] if isinstance(text, list) else f"the {text}"
            return super().__call__(text, *args, **kwargs)

    tokenizer.__class__ = Prefixing
    encoder = TextEncoder(tokenizer, 8, "pt")
    assert not encoder.uses_rust
    assert encoder("book a flight")["input_ids"].tolist() == [
        tokenizer.convert_tokens_to_ids(["[CLS]", "the", "book", "a", "flight", "[SEP]"])
    ]


def test_an_encoder_says_when_its_tokenizer_changed_and_refuses_an_empty_list(tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(write_tokenizer(tmp_path / "tok"))
    encoder = TextEncoder(tokenizer, 8, "np")
    assert encoder.fits(tokenizer, 8) and not encoder.fits(tokenizer, 16)
    tokenizer.add_tokens(["zebra"])  # a new token the copied Rust tokenizer does not know
    assert not encoder.fits(tokenizer, 8)
    rebuilt = TextEncoder(tokenizer, 8, "np")
    assert _equal(rebuilt("a zebra"), rebuilt.reference("a zebra"))
    tokenizer.padding_side = "left"
    assert not rebuilt.fits(tokenizer, 8)
    with pytest.raises(ValueError, match="no texts to encode"):
        rebuilt([])


@pytest.mark.parametrize("rust", [True, False])
def test_texts_that_are_not_strings_are_named_by_position_and_type(minilm, rust):
    encoder = TextEncoder(minilm, 16, "np")
    if not rust:
        encoder.rust = None  # the tokenizer-call path (slow tokenizers, or ones whose Rust encoding differs)
    for call in (encoder, encoder.reference):
        with pytest.raises(ValueError, match=r"1 of 1 texts are not strings: texts\[0\] is NoneType \(None\)"):
            call([None])
        with pytest.raises(ValueError, match=r"1 of 2 texts are not strings: texts\[1\] is int \(3\)\. "):
            call(["ok", 3])
        with pytest.raises(ValueError, match=r"texts\[1\] is float \(nan\), texts\[2\] is bytes \(b'x'\)"):
            call(np.array(["ok", float("nan"), b"x"], dtype=object))
        with pytest.raises(ValueError, match="texts must be a string or a list of strings, got NoneType"):
            call(None)
        with pytest.raises(ValueError, match=r"got bytes: decode bytes first"):
            call(b"book a flight")
    assert _equal(encoder(("ok", "fine")), encoder.reference(["ok", "fine"]))  # any sequence of strings still works
