"""Uploading an export folder to the Hugging Face Hub, where optimum loads it by its repository name."""

from __future__ import annotations

from pathlib import Path

__all__ = ["hub_files", "push_to_hub"]


def hub_files(folder: str | Path) -> list[str]:
    """The files of an export folder that :func:`push_to_hub` uploads (every file, relative to ``folder``).

    Raises:
        FileNotFoundError: ``folder`` is no export folder (no ``config.json``, no ``.onnx`` graph or no tokenizer).
    """
    folder = Path(folder)
    missing = [name for name in ("config.json", "tokenizer_config.json") if not (folder / name).is_file()]
    if not list(folder.glob("*.onnx")):
        missing.append("*.onnx")
    if missing:
        raise FileNotFoundError(
            f"{str(folder)!r} is no export folder: it lacks {missing} (write one with export_text_classifier or "
            "`lightning-distill export`)"
        )
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def push_to_hub(folder: str | Path, repo_id: str, private: bool = True, token: str | None = None) -> str:
    """Create the model repository ``repo_id`` (where it does not exist) and upload the export folder to it.

    This needs the network and a Hugging Face token with write access (``token``, or ``huggingface-cli login``);
    nothing in the library calls it unless asked. Check what would be uploaded with :func:`hub_files`.

    Args:
        folder: An export folder.
        repo_id: ``user/name`` or ``organization/name`` of the model repository.
        private: Create the repository as private (an existing repository keeps its visibility).
        token: Hub token; None uses the logged-in one.

    Returns:
        The URL of the upload's commit.
    """
    hub_files(folder)
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    commit = api.upload_folder(
        folder_path=str(folder), repo_id=repo_id, repo_type="model", commit_message="Upload from lightning-distill"
    )
    return str(commit.commit_url)
