"""Tiny Hugging Face models, tokenizers and text data sets written to a temporary folder, for the text tests.

Everything is built in-process and saved with ``save_pretrained`` / ``to_parquet``, so the tests load it through the
same paths real checkpoints and data files take. No network.
"""

from __future__ import annotations

from pathlib import Path

WORDS = ["book", "flight", "hotel", "weather", "rain", "sun", "play", "song", "music", "the", "a", "to", "what", "is"]
INTENTS = ["travel", "weather", "music"]
_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_tokenizer(folder: Path, extra_words: int = 0) -> str:
    """A lowercasing WordPiece tokenizer of :data:`WORDS` (plus ``extra_words`` filler tokens), saved in ``folder``."""
    from transformers import BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = _SPECIAL + WORDS + [f"w{i}" for i in range(extra_words)]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(str(folder))
    return str(folder)


def write_bert(
    folder: Path,
    vocab_size: int = len(_SPECIAL) + len(WORDS),
    layers: int = 2,
    hidden: int = 16,
    heads: int = 2,
    labels: list[str] | None = None,
    seed: int = 0,
) -> str:
    """A tiny BERT saved to ``folder``: a bare encoder, or a sequence classifier when ``labels`` are given."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
    )
    if labels is None:
        model = BertModel(config)
    else:
        config.num_labels = len(labels)
        config.id2label = dict(enumerate(labels))
        config.label2id = {name: i for i, name in enumerate(labels)}
        model = BertForSequenceClassification(config)
    model.save_pretrained(str(folder))
    return str(folder)


def write_distilbert(
    folder: Path, vocab_size: int = len(_SPECIAL) + len(WORDS), layers: int = 2, hidden: int = 16
) -> str:
    """A tiny bare DistilBERT encoder saved to ``folder``."""
    import torch
    from transformers import DistilBertConfig, DistilBertModel

    torch.manual_seed(0)
    config = DistilBertConfig(
        vocab_size=vocab_size, dim=hidden, n_layers=layers, n_heads=2, hidden_dim=2 * hidden, max_position_embeddings=64
    )
    DistilBertModel(config).save_pretrained(str(folder))
    return str(folder)


def _rows(n: int, seed: int) -> tuple[list[str], list[int]]:
    import random

    rng = random.Random(seed)
    keywords = {0: ["book", "flight", "hotel"], 1: ["weather", "rain", "sun"], 2: ["play", "song", "music"]}
    texts, labels = [], []
    for i in range(n):
        label = i % len(INTENTS)
        words = [rng.choice(keywords[label]) for _ in range(rng.randint(1, 3))]
        words += rng.sample(["the", "a", "to", "what", "is"], rng.randint(0, 3))
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def write_data(folder: Path, labels: str = "classlabel", suffix: str = "parquet", sizes=(48, 12, 12)) -> dict[str, str]:
    """Train/validation/test files of short intent queries; ``labels`` is ``classlabel``, ``string`` or ``int``."""
    from datasets import ClassLabel, Dataset, Features, Value

    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for seed, (split, n) in enumerate(zip(("train", "validation", "test"), sizes, strict=True)):
        texts, ids = _rows(n, seed)
        if labels == "classlabel":
            features = Features({"text": Value("string"), "intent": ClassLabel(names=INTENTS)})
            data = Dataset.from_dict({"text": texts, "intent": ids}, features=features)
        elif labels == "string":
            data = Dataset.from_dict({"text": texts, "intent": [INTENTS[i] for i in ids]})
        elif labels == "int":
            data = Dataset.from_dict({"text": texts, "intent": ids})
        else:  # an unexpected type, for the bad-input tests
            data = Dataset.from_dict({"text": texts, "intent": [float(i) for i in ids]})
        path = folder / f"{split}.{suffix}"
        {"parquet": data.to_parquet, "csv": data.to_csv, "jsonl": data.to_json}[suffix](str(path))
        files[split] = str(path)
    return files


def write_text_task(root: Path, teacher_layers: int = 4) -> Path:
    """A tokenizer (``root/tokenizer``), parquet splits (``root/data``) and a BERT teacher labelled :data:`INTENTS`
    (``root/teacher``): the text distillation tests' task. Returns ``root``."""
    write_tokenizer(root / "tokenizer")
    write_data(root / "data")
    write_bert(root / "teacher", layers=teacher_layers, labels=INTENTS)
    return root


def text_data(folder: Path, **kwargs):
    """The ``TextClassificationDataModule`` of :func:`write_text_task`'s splits (batch 8; ``kwargs`` override)."""
    from lightning_distill.lightning.data import TextClassificationDataModule

    files = {split: str(folder / "data" / f"{split}.parquet") for split in ("train", "validation", "test")}
    kwargs.setdefault("tokenizer", str(folder / "tokenizer"))
    return TextClassificationDataModule(data_files=files, label_column="intent", batch_size=8, **kwargs)
