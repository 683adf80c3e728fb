"""A recipe is a list of named steps run in order, each writing its artifacts under ``runs/<recipe>/<step>/``.

A finished step leaves ``runs/<recipe>/<step>/done.json`` with what it produced (its result, and a fingerprint of
every file or folder the result names) and what it was made from (its inputs: the options it declared, the content of
the config files it declared, and the fingerprints of the earlier steps' artifacts it read, which are the steps it
named in ``reads`` and those whose :meth:`Recipe.result` it called). A rerun skips a finished step only when its
inputs and its outputs on disk are unchanged. Otherwise the step is redone, with the reason printed
(``redone: teacher's checkpoint changed since this step ran``), and so is every step after it in that run: the simple
rule that a redone step invalidates all later ones, so nothing downstream can mix old and new artifacts even where it
reads them in ways no declaration names. ``--force`` redoes every step; ``--only STEP ...`` runs only those steps (the
others are left as they are, saying so when they are stale); a later plain run redoes whatever they made stale. A
``done.json`` written before inputs were recorded is kept unless an earlier step finished after it.

A failing step stops the recipe, keeps every earlier step's results, and says which step failed and how to resume.
``done.json`` is written atomically (:mod:`lightning_distill.core.atomic`), so a full disk leaves the previous record or
none, never a truncated one; one that cannot be read anyway (emptied or edited by hand) is reported, naming the file,
and its step counts as not finished, so it is redone. Each run first removes the temporaries that interrupted writers
left under the recipe's folder.

Fingerprints: a file of up to 16 MiB is the SHA-256 of its content. A larger one (checkpoints, ONNX graphs, model
weights of hundreds of MB) is its size, modification time and the SHA-256 of its first and last MiB: hashing it all
would cost seconds on every rerun, a step that rewrites a file changes its modification time, and the ends catch a
file swapped for another of the same size and time. A folder is the fingerprint of each file in it, by relative path.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_distill.core.atomic import clean_temporaries, write_json

StepFn = Callable[[], dict[str, Any] | None]
DONE_FILE = "done.json"
WHOLE_FILE_LIMIT = 16 * 2**20
END_BYTES = 2**20


class StepFailed(RuntimeError):
    """A recipe step raised; the message names the step and how to resume."""


def fingerprint(path: str | Path) -> str | None:
    """A file's or folder's fingerprint (see the module docstring); None if ``path`` does not exist."""
    path = Path(path)
    if path.is_file():
        return _file_fingerprint(path)
    if not path.is_dir():
        return None
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.name != DONE_FILE):
        digest.update(f"{file.relative_to(path).as_posix()}\0{_file_fingerprint(file)}\0".encode())
    return f"folder-sha256:{digest.hexdigest()}"


def _file_fingerprint(path: Path) -> str:
    stat = path.stat()
    digest = hashlib.sha256()
    with path.open("rb") as file:
        if stat.st_size <= WHOLE_FILE_LIMIT:
            for chunk in iter(lambda: file.read(END_BYTES), b""):
                digest.update(chunk)
            return f"sha256:{digest.hexdigest()}"
        digest.update(file.read(END_BYTES))
        file.seek(-END_BYTES, 2)
        digest.update(file.read(END_BYTES))
    return f"size:{stat.st_size},mtime_ns:{stat.st_mtime_ns},ends-sha256:{digest.hexdigest()}"


def result_paths(result: Any, key: str = "") -> dict[str, str]:
    """The existing files and folders a step's result names, by key (``"checkpoint"``, ``"models.0"``, ...).

    A string counts as a path when it holds a path separator and exists, so names and messages never do.
    """
    if isinstance(result, dict):
        items: Iterable[tuple[Any, Any]] = result.items()
    elif isinstance(result, list):
        items = enumerate(result)
    else:
        is_path = isinstance(result, str) and "/" in result.replace("\\", "/") and Path(result).exists()
        return {key: result} if is_path else {}
    paths: dict[str, str] = {}
    for name, value in items:
        paths.update(result_paths(value, f"{key}.{name}" if key else str(name)))
    return paths


def _as_json(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


@dataclass(frozen=True)
class StepInputs:
    """What a step declares it depends on; see :meth:`Recipe.step`."""

    reads: tuple[str, ...] = ()
    configs: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Recipe:
    """Named steps with skip-if-unchanged, ``--force``, ``--only`` and resumable failures.

    Args:
        name: The recipe's name; artifacts go under ``root / name``.
        root: Folder of all recipe runs.
    """

    name: str
    root: Path = Path("runs")
    steps: list[tuple[str, StepFn]] = field(default_factory=list)
    inputs: dict[str, StepInputs] = field(default_factory=dict)
    _reading: set[str] | None = field(default=None, init=False, repr=False)
    _fingerprints: dict[str, str | None] = field(default_factory=dict, init=False, repr=False)

    @property
    def folder(self) -> Path:
        return Path(self.root) / self.name

    def step_dir(self, step: str) -> Path:
        return self.folder / step

    def step(
        self,
        name: str,
        reads: Iterable[str] = (),
        configs: Iterable[str | Path] = (),
        options: dict[str, Any] | None = None,
    ) -> Callable[[StepFn], StepFn]:
        """Decorator that appends a step; the function returns a JSON-able summary of what it produced.

        Args:
            name: The step's name, also its folder's.
            reads: Earlier steps whose artifacts it reads without calling :meth:`result` (e.g. through a path written
                in a config file); the steps whose :meth:`result` it calls are recorded without being named here.
            configs: Files it reads that no step produces (config files): their content is recorded.
            options: The settings its results depend on (JSON-able): when one changes, the step is redone.
        """
        names = [existing for existing, _ in self.steps]
        if name in names:
            raise ValueError(f"recipe {self.name!r} already has a step named {name!r}")
        reads = tuple(reads)
        unknown = [step for step in reads if step not in names]
        if unknown:
            raise ValueError(
                f"step {name!r} reads {unknown}, which are not earlier steps of recipe {self.name!r} (it has {names})"
            )
        inputs = StepInputs(reads, tuple(str(path) for path in configs), _as_json(options or {}))

        def register(fn: StepFn) -> StepFn:
            self.steps.append((name, fn))
            self.inputs[name] = inputs
            return fn

        return register

    def is_done(self, step: str) -> bool:
        """Whether ``step`` finished: its ``done.json`` is there and readable."""
        return self._record(step) is not None

    def result(self, step: str) -> dict[str, Any]:
        """The summary a finished step recorded; a step that calls this is recorded as reading ``step``."""
        record = self._record(step)
        if record is None:
            path = self.step_dir(step) / DONE_FILE
            raise FileNotFoundError(
                f"step {step!r} of recipe {self.name!r} has not finished ({path} is missing or unreadable)"
            )
        if self._reading is not None:
            self._reading.add(step)
        return record["result"]

    def run(self, force: bool = False, only: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """Run every step that is not done or whose inputs or outputs changed (all of them with ``force``), and every
        step after one that ran; return each step's summary."""
        names = [name for name, _ in self.steps]
        unknown = sorted(set(only or []) - set(names))
        if unknown:
            raise ValueError(f"unknown steps {unknown}; recipe {self.name!r} has {names}")
        self._fingerprints.clear()
        clean_temporaries(self.folder, recursive=True)
        results: dict[str, dict[str, Any]] = {}
        ran: str | None = None  # the first step that ran: every later one is redone
        for index, (name, fn) in enumerate(self.steps, start=1):
            header = f"[{self.name} {index}/{len(self.steps)}] {name}"
            record = self._record(name)
            if only and name not in only:
                self._leave(header, name, record, results)
                continue
            if record is None:
                reason = "running"
            elif force:
                reason = "redone (--force)"
            elif ran is not None:
                reason = f"redone: step {ran!r} ran before it in this run, so every later step is redone"
            else:
                stale = self._why_stale(name, record)
                reason = None if stale is None else f"redone: {stale}"
            if reason is None:
                checked = "inputs and outputs unchanged" if "inputs" in record else _UNCHECKED
                print(f"{header}: done before, skipped ({checked}; --force redoes it)", flush=True)
                results[name] = record["result"]
                continue
            print(f"{header}: {reason}", flush=True)
            results[name] = self._run_step(index, name, fn)
            ran = ran or name
        return results

    def _leave(self, header: str, name: str, record: dict[str, Any] | None, results: dict[str, Any]) -> None:
        """Say how a step left out by ``--only`` stands."""
        if record is None:
            print(f"{header}: not in --only, skipped (not done yet)", flush=True)
            return
        results[name] = record["result"]
        stale = self._why_stale(name, record)
        if stale is None:
            checked = "inputs and outputs unchanged" if "inputs" in record else _UNCHECKED
            print(f"{header}: not in --only, left as it is (done before, {checked})", flush=True)
        else:
            print(
                f"{header}: not in --only, left as it is although {stale}; a run without --only redoes it", flush=True
            )

    def _run_step(self, index: int, name: str, fn: StepFn) -> dict[str, Any]:
        done = self.step_dir(name) / DONE_FILE
        done.unlink(missing_ok=True)
        self._reading = set()
        start = time.perf_counter()
        try:
            result = fn() or {}
        except Exception as error:
            finished = [n for n, _ in self.steps[: index - 1]]
            raise StepFailed(
                f"step {name!r} of recipe {self.name!r} failed: {type(error).__name__}: {error}\n"
                f"Results of earlier steps {finished} are kept under {self.folder}. Fix the cause and rerun the "
                f"same command: finished steps whose inputs are unchanged are skipped and the recipe resumes at "
                f"{name!r}."
            ) from error
        finally:
            read, self._reading = self._reading, None
        seconds = time.perf_counter() - start
        self._fingerprints.clear()  # the step may have rewritten files fingerprinted before it
        declared = self.inputs[name]
        reads = sorted((set(declared.reads) | read) - {name})
        record = {
            "step": name,
            "seconds": round(seconds, 2),
            "result": result,
            "inputs": {
                "options": declared.options,
                "configs": {path: self._fingerprint(path) for path in declared.configs},
                "reads": {step: self._outputs(step) for step in reads},
            },
            "outputs": {
                key: {"path": path, "fingerprint": self._fingerprint(path)}
                for key, path in result_paths(result).items()
            },
        }
        write_json(done, record)
        print(f"[{self.name} {index}/{len(self.steps)}] {name}: finished in {seconds:.1f} s", flush=True)
        return result

    def _record(self, step: str) -> dict[str, Any] | None:
        """What a finished step recorded; None if it has not finished or its ``done.json`` cannot be read."""
        path = self.step_dir(step) / DONE_FILE
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            why = f"{type(error).__name__}: {error}"
        else:
            if isinstance(record, dict) and "result" in record:
                return record
            why = "it holds no step record (no 'result')"
        warnings.warn(
            f"{path} cannot be read ({why}; an empty one is what an interrupted older version left): step {step!r} "
            "counts as not finished and is redone",
            stacklevel=3,
        )
        return None

    def _fingerprint(self, path: str) -> str | None:
        if path not in self._fingerprints:
            self._fingerprints[path] = fingerprint(path)
        return self._fingerprints[path]

    def _outputs(self, step: str) -> dict[str, str | None] | None:
        """The fingerprints, on disk now, of what a finished step produced; None if it has not finished."""
        record = self._record(step)
        if record is None:
            return None
        if "outputs" in record:
            paths = {key: entry["path"] for key, entry in record["outputs"].items()}
        else:  # a done.json of a version that recorded no outputs
            paths = result_paths(record["result"])
        return {key: self._fingerprint(path) for key, path in paths.items()}

    def _why_stale(self, name: str, record: dict[str, Any]) -> str | None:
        """Why a finished step must be redone (its inputs or outputs changed since it ran), or None."""
        recorded = record.get("inputs")
        if recorded is None:  # recorded before inputs were: only the order in which steps finished tells
            return self._finished_after(name)
        declared = self.inputs[name]
        before, now = recorded.get("options", {}), declared.options
        changed = [key for key in sorted(set(before) | set(now)) if before.get(key) != now.get(key)]
        if changed:
            diff = "; ".join(
                f"{key}: {json.dumps(before.get(key))} before, {json.dumps(now.get(key))} now" for key in changed
            )
            return f"its options changed since it ran ({diff})"
        configs = recorded.get("configs", {})
        if len(configs) != len(declared.configs):
            return f"it reads other config files than when it ran ({declared.configs}, then {sorted(configs)})"
        for path, old in zip(declared.configs, configs.values(), strict=True):
            current = self._fingerprint(path)
            if current != old:
                return f"config {path} is missing" if current is None else f"config {path} changed since this step ran"
        reads = recorded.get("reads", {})
        for step in sorted(set(reads) | set(declared.reads)):
            if step not in reads:
                return f"it now reads step {step!r}, which it did not when it ran"
            current, old = self._outputs(step), reads[step]
            if current is None:
                return f"step {step!r}, whose results it read, has no results now"
            changed = [key for key in sorted(set(current) | set(old or {})) if (old or {}).get(key) != current.get(key)]
            if changed:
                return f"{step}'s {' and '.join(changed)} changed since this step ran"
        for key, entry in record.get("outputs", {}).items():
            current = self._fingerprint(entry["path"])
            if current != entry["fingerprint"]:
                what = "is missing" if current is None else "changed on disk since this step ran"
                return f"its {key} {entry['path']} {what}"
        return None

    def _finished_after(self, name: str) -> str | None:
        """Why a step recorded without its inputs is stale: an earlier step finished after it; else None."""
        finished = (self.step_dir(name) / DONE_FILE).stat().st_mtime_ns
        for step, _ in self.steps[: [n for n, _ in self.steps].index(name)]:
            done = self.step_dir(step) / DONE_FILE
            if done.is_file() and done.stat().st_mtime_ns > finished:
                return f"step {step!r} finished after it (recorded by an older version, without its inputs)"
        return None


_UNCHECKED = "recorded by an older version without its inputs: only checked to have finished after earlier steps"


def recipe_arguments(description: str) -> argparse.ArgumentParser:
    """The command-line options every recipe script shares."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--force", action="store_true", help="redo every step, even those finished and up to date")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="STEP",
        help="run only these steps (those not done or out of date; all of them with --force); the next run without "
        "--only redoes the later steps that read them",
    )
    return parser


def main_guard(run: Callable[[], Any]) -> None:
    """Run a recipe's main function and turn a failed step into a short message and exit code 1.

    Lightning's tips and libraries' internal deprecation warnings are left out, as by the ``lightning-distill``
    command (``LIGHTNING_DISTILL_DEBUG=1`` keeps them).
    """
    from lightning_distill.lightning.console import quiet_console

    quiet_console()
    try:
        run()
    except StepFailed as error:
        traceback.print_exception(error.__cause__)
        print(f"\n{error}", file=sys.stderr)
        sys.exit(1)


def load_trained(config: str | Path, checkpoint: str | Path, overrides: list[str] | None = None) -> tuple[Any, Any]:
    """The deployable model of ``config`` with the weights of ``checkpoint``, and the config's data module.

    ``overrides`` are command-line style arguments such as ``["--data.root", "../shared/data/mnist10k"]``.
    """
    from lightning_distill.lightning.cli import cli_main
    from lightning_distill.lightning.modules.deployable import load_deployable

    cli = cli_main(["--config", str(config), *(overrides or [])], run=False)
    return load_deployable(cli.model, checkpoint), cli.datamodule
