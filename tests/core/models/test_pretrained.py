"""No Hugging Face folder runs its own code: ``auto_map`` in a model, tokenizer or export folder is refused by name,
without transformers' ``[y/N]`` prompt, whether stdin is closed or open; every ``from_pretrained`` goes through one
helper that passes ``trust_remote_code=False``."""

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tiny_text import INTENTS, write_bert, write_data, write_tokenizer

from lightning_distill.core.models import TransformerClassifier
from lightning_distill.core.models.pretrained import RemoteCodeError, check_no_remote_code

PACKAGE = Path(__file__).resolve().parents[2] / "lightning_distill"
_EVIL = "open({marker!r}, 'w').close()  # runs when transformers imports the folder's code\n"
_CONFIG_MAP = {"AutoConfig": "evil.EvilConfig", "AutoModelForSequenceClassification": "evil.EvilModel"}
_TOKENIZER_MAP = {"AutoTokenizer": ["evil.EvilTokenizer", None]}


def _ask_for_remote_code(folder: Path, file: str, auto_map: dict, marker: Path) -> Path:
    """Add ``auto_map`` to ``folder/file`` and the code it names, which would create ``marker`` if it ran.

    The model type and tokenizer class are made ones transformers does not ship, so that only the folder's code could
    load it: transformers then asks whether to run it (a known type would be loaded by transformers' own code).
    """
    path = folder / file
    content = {**json.loads(path.read_text()), "auto_map": auto_map}
    content.pop("tokenizer_class", None)
    if "model_type" in content:
        content["model_type"] = "evil-bert"
    path.write_text(json.dumps(content))
    (folder / "evil.py").write_text(_EVIL.format(marker=str(marker)))
    return folder


def test_every_from_pretrained_of_the_package_goes_through_the_helper() -> None:
    calls = [
        f"{path.relative_to(PACKAGE)}:{node.lineno}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "pretrained.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr == "from_pretrained"
    ]
    assert not calls, f"call lightning_distill.core.models.pretrained.from_pretrained instead: {calls}"


@pytest.mark.parametrize(
    ("file", "auto_map"), [("config.json", _CONFIG_MAP), ("tokenizer_config.json", _TOKENIZER_MAP)]
)
def test_a_folder_that_asks_for_remote_code_is_refused_naming_the_entry(tmp_path: Path, file: str, auto_map) -> None:
    folder = Path(write_bert(tmp_path / "bert", labels=INTENTS))
    write_tokenizer(folder)
    _ask_for_remote_code(folder, file, auto_map, tmp_path / "ran")
    entry = json.dumps(auto_map).replace("[", r"\[")
    with pytest.raises(
        RemoteCodeError, match=rf"model '.*bert' asks to run its own Python code: {file} has auto_map {entry}"
    ):
        check_no_remote_code(folder)
    with pytest.raises(
        RemoteCodeError, match=rf"checkpoint '.*bert' asks .* {file} has auto_map.*trust_remote_code=False"
    ):
        TransformerClassifier(str(folder), num_classes=3)
    assert not (tmp_path / "ran").exists()


_LOAD_EACH = """
import json, sys, time
from lightning_distill.lightning.data import TextClassificationDataModule
from lightning_distill.core.export import load_exported
from lightning_distill.core.models import TransformerClassifier

cases = {{
    "export": lambda: load_exported({export!r}, "model.onnx"),
    "tokenizer": lambda: TextClassificationDataModule(
        tokenizer={tokenizer!r}, data_files={files!r}, label_column="intent"
    ),
    "model": lambda: TransformerClassifier({model!r}, num_classes=3),
}}
results = {{}}
for name, load in cases.items():
    start = time.perf_counter()
    try:
        load()
        outcome = "loaded"
    except BaseException as error:
        outcome = f"{{type(error).__name__}}: {{error}}"
    results[name] = {{"outcome": outcome, "seconds": time.perf_counter() - start}}
print("RESULTS " + json.dumps(results), flush=True)
"""


@pytest.fixture(scope="module")
def remote_code_folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """An export folder, a tokenizer folder and a model folder, each asking for the code of its ``evil.py``."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from lightning_distill.core.export import export_text_classifier

    root = tmp_path_factory.mktemp("remote_code")
    marker = root / "ran"
    tokenizer_folder = Path(write_tokenizer(root / "tokenizer"))
    model_folder = Path(write_bert(root / "bert", labels=INTENTS))
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    model = AutoModelForSequenceClassification.from_pretrained(model_folder).eval()
    export_text_classifier(model, tokenizer, root / "export", ["what is the weather"], graphs=["fp32"])
    _ask_for_remote_code(root / "export", "config.json", _CONFIG_MAP, marker)
    _ask_for_remote_code(root / "export", "tokenizer_config.json", _TOKENIZER_MAP, marker)
    _ask_for_remote_code(tokenizer_folder, "tokenizer_config.json", _TOKENIZER_MAP, marker)
    _ask_for_remote_code(model_folder, "config.json", _CONFIG_MAP, marker)
    files = write_data(root / "data")
    script = _LOAD_EACH.format(
        export=str(root / "export"), tokenizer=str(tokenizer_folder), files=files, model=str(model_folder)
    )
    return script, marker


@pytest.mark.parametrize("stdin", ["closed", "open"])
def test_remote_code_folders_are_refused_without_a_prompt_or_a_wait(remote_code_folders, tmp_path: Path, stdin) -> None:
    """transformers would ask ``[y/N]`` and wait 15 s (stdin open) or fail with a KeyError (stdin closed)."""
    script, marker = remote_code_folders
    out, err = (tmp_path / "stdout").open("w+"), (tmp_path / "stderr").open("w+")
    close_stdin = (lambda: os.close(0)) if stdin == "closed" else None
    pipe = subprocess.PIPE if stdin == "open" else None
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdin=pipe, stdout=out, stderr=err, preexec_fn=close_stdin
    )
    started = time.monotonic()
    try:
        process.wait(timeout=120)  # imports on a loaded machine; each load itself is timed below
    finally:
        process.kill()
        if process.stdin is not None:
            process.stdin.close()
    out.seek(0)
    err.seek(0)
    stdout, stderr = out.read(), err.read()
    assert "[y/N]" not in stdout + stderr
    assert process.returncode == 0, stderr[-2000:]
    results = json.loads(stdout.split("RESULTS ", 1)[1])
    for name, result in results.items():
        assert result["outcome"].startswith("RemoteCodeError: "), (name, result["outcome"])
        assert "asks to run its own Python code" in result["outcome"] and "auto_map" in result["outcome"], name
        assert result["seconds"] < 5, (name, result["seconds"], time.monotonic() - started)
    assert "export folder '" in results["export"]["outcome"]
    assert (
        "tokenizer '" in results["tokenizer"]["outcome"] and "tokenizer_config.json" in results["tokenizer"]["outcome"]
    )
    assert not marker.exists()
