"""Raw texts to a tokenizer's model inputs at serving speed: the Rust tokenizer called directly.

A Hugging Face fast tokenizer spends most of a one-query call in Python (argument checks, ``BatchEncoding``, tensor
conversion), several times what the Rust tokenizer itself takes for a short query, which is a noticeable share of a
small int8 student's latency (measured figures: ``docs/results.md``). :class:`TextEncoder` builds the same encoding
(truncation to ``max_length``, padding to the longest text, the tokenizer's special tokens, pad id and side) with the
``tokenizers`` object the fast tokenizer wraps, and checks on probe texts that both agree before using it; where they
do not (a tokenizer with Python-side steps), or for a slow tokenizer, it calls the tokenizer itself.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

_log = logging.getLogger(__name__)

# Probe texts for the agreement check: plain, cased with punctuation, accents and CJK, and one longer than any
# max_length a text classifier uses (so truncation is compared too).
PROBES = (
    "how do i transfer money from my checking to my savings account",
    "Héllo, Wörld! Ça va? 東京 is 3.5km away -- isn't it?",
    " ".join(f"word{i} {w}" for i, w in enumerate(["truncate", "here", "or", "there"] * 150)),  # differs end to end
)
_FIELDS = {"input_ids": "ids", "token_type_ids": "type_ids", "attention_mask": "attention_mask"}
_NO_LIMIT = 1_000_000  # tokenizers without a model_max_length report 1e30
_SHOWN = 5  # wrong texts named in an error


class TextEncoder:
    """One text or a list of texts -> the tokenizer's model inputs, truncated and padded to the longest.

    Equal to ``tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors=tensors)``,
    keeping the tokenizer's ``model_input_names``, and several times faster for one query when ``tokenizer`` is a
    fast (Rust) tokenizer that agrees with its own call on :data:`PROBES` (``uses_rust`` says which path it took).
    Picklable, like the tokenizer. It copies the tokenizer's settings when built: after changing them (tokens added,
    padding or truncation side, ``model_max_length``) build another; :meth:`fits` tells whether one is still right.

    Args:
        tokenizer: A Hugging Face tokenizer.
        max_length: Longest encoding; None: the tokenizer's ``model_max_length``.
        tensors: ``"pt"`` (torch tensors) or ``"np"`` (numpy int64 arrays).
    """

    def __init__(self, tokenizer: Any, max_length: int | None = None, tensors: Literal["pt", "np"] = "pt") -> None:
        self.tokenizer, self.max_length, self.tensors = tokenizer, max_length, tensors
        self._settings = _settings(tokenizer, max_length)
        self.names = [n for n in tokenizer.model_input_names if n in _FIELDS]
        self.rust = _rust_tokenizer(tokenizer, max_length)
        if self.rust is not None and not self._agrees():
            _log.info(
                "the Rust tokenizer encodes differently from %s's call: texts go through the tokenizer call",
                type(tokenizer).__name__,
            )
            self.rust = None

    @property
    def uses_rust(self) -> bool:
        return self.rust is not None

    def fits(self, tokenizer: Any, max_length: int | None) -> bool:
        """Whether this encoder encodes as ``tokenizer`` (the same object, with the same settings) would now."""
        return tokenizer is self.tokenizer and _settings(tokenizer, max_length) == self._settings

    def __call__(self, texts: str | Sequence[str]) -> dict[str, Any]:
        """The model inputs of ``texts``; a ValueError names anything that is not a string (see :func:`check_texts`)."""
        texts = check_texts(texts)
        if self.rust is None:
            return self.reference(texts)
        encodings = [self.rust.encode(texts)] if isinstance(texts, str) else self.rust.encode_batch(texts)
        arrays = {name: np.array([getattr(e, _FIELDS[name]) for e in encodings], np.int64) for name in self.names}
        if self.tensors == "np":
            return arrays
        import torch

        return {name: torch.from_numpy(array) for name, array in arrays.items()}

    def reference(self, texts: str | Sequence[str]) -> dict[str, Any]:
        """The tokenizer's own call."""
        texts = check_texts(texts)
        texts = [texts] if isinstance(texts, str) else texts
        encoded = self.tokenizer(
            texts, truncation=True, max_length=self.max_length, padding=True, return_tensors=self.tensors
        )
        return {name: encoded[name] for name in self.tokenizer.model_input_names if name in encoded}

    def _agrees(self) -> bool:
        for probe in (list(PROBES[:1]), list(PROBES)):
            expected, got = self.reference(probe), self(probe)
            if list(expected) != list(got) or not all(np.array_equal(np.asarray(expected[k]), got[k]) for k in got):
                return False
        return True


def check_texts(texts: Any) -> str | list[str]:
    """``texts`` as one string or a list of strings, or a ValueError that says what is wrong with them.

    The tokenizers' own errors (``TextEncodeInput must be Union[...]``) name neither the position nor the value; a
    ``None`` or ``nan`` among the texts is usually a missing cell of a table.

    Raises:
        ValueError: ``texts`` is neither a string nor a non-empty sequence, or some of its items are not strings (the
            message gives the first positions with their types and values).
    """
    if isinstance(texts, str):
        return texts
    if isinstance(texts, (bytes, bytearray, Mapping)) or not isinstance(texts, Iterable):
        raise ValueError(
            f"texts must be a string or a list of strings, got {type(texts).__name__}"
            + (": decode bytes first (bytes.decode('utf-8'))" if isinstance(texts, (bytes, bytearray)) else "")
        )
    texts = list(texts)
    if not texts:
        raise ValueError("no texts to encode: pass a string or a non-empty list of strings")
    bad = [i for i, text in enumerate(texts) if not isinstance(text, str)]
    if bad:
        shown = ", ".join(f"texts[{i}] is {type(texts[i]).__name__} ({texts[i]!r:.40})" for i in bad[:_SHOWN])
        more = f" and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
        raise ValueError(
            f"{len(bad)} of {len(texts)} texts are not strings: {shown}{more}. Every text must be a str; a None or "
            "nan is usually a missing cell: drop or fill those rows before predicting"
        )
    return texts


def _settings(tokenizer: Any, max_length: int | None) -> tuple:
    """What the encoding depends on besides the vocabulary's content."""
    names = ("padding_side", "truncation_side", "model_max_length", "pad_token_id", "split_special_tokens")
    return (max_length, len(tokenizer), *(getattr(tokenizer, name, None) for name in names))


def _rust_tokenizer(tokenizer: Any, max_length: int | None) -> Any:
    """A copy of the fast tokenizer's ``tokenizers.Tokenizer`` set to truncate and pad as the call would; else None."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not getattr(tokenizer, "is_fast", False):
        return None
    rust = copy.deepcopy(backend)
    limit = max_length if max_length is not None else tokenizer.model_max_length
    if limit is not None and limit < _NO_LIMIT:
        rust.enable_truncation(int(limit), direction=getattr(tokenizer, "truncation_side", "right"))
    else:
        rust.no_truncation()
    if tokenizer.pad_token_id is None:
        return None
    rust.enable_padding(
        direction=tokenizer.padding_side,
        pad_id=tokenizer.pad_token_id,
        pad_type_id=tokenizer.pad_token_type_id,
        pad_token=tokenizer.pad_token,
    )
    return rust
