"""Checks a text recipe's script runs on its inputs before any training: local paths exist, the Hub answers."""

from __future__ import annotations

from pathlib import Path

__all__ = ["hub_problem", "is_local", "missing_paths"]


def missing_paths(paths: dict[str, str | Path | None]) -> list[str]:
    """``"<option> <path> does not exist"`` for each given path that does not exist."""
    return [f"{option} {path} does not exist" for option, path in paths.items() if path and not Path(path).exists()]


def is_local(name: str) -> bool:
    """Whether a model or tokenizer name is a local path (else it is a Hub name)."""
    return Path(name).exists() or name.startswith((".", "/", "~")) or name.endswith((".ckpt", ".pt"))


def hub_problem(models: dict[str, str], dataset: str | None = None, timeout: float = 10.0) -> str | None:
    """Why the Hub models (``{option: name}``; local paths are skipped) or ``dataset`` cannot be had, or None.

    With ``HF_HUB_OFFLINE`` set, the models must be in the local Hugging Face cache; otherwise the Hub must answer.
    """
    from huggingface_hub import HfApi, constants, try_to_load_from_cache
    from huggingface_hub.errors import RepositoryNotFoundError

    hub = {option: name for option, name in models.items() if not is_local(name)}
    if constants.HF_HUB_OFFLINE:
        missing = [
            f"{option} {name}" for option, name in hub.items() if try_to_load_from_cache(name, "config.json") is None
        ]
        return (
            f"HF_HUB_OFFLINE is set and {', '.join(missing)} are not in the local Hugging Face cache"
            if missing
            else None
        )
    api = HfApi()
    checks = [(option, name, api.model_info) for option, name in hub.items()]
    if dataset is not None:
        checks.append(("--dataset", dataset, api.dataset_info))
    for option, name, info in checks:
        try:
            info(name, timeout=timeout)
        except RepositoryNotFoundError:
            return f"{option} {name} is not on the Hugging Face Hub (or is private)"
        except Exception as error:  # connection refused, name resolution, timeout, proxy errors
            return f"the Hugging Face Hub is unreachable ({type(error).__name__}: {error})"
    return None
