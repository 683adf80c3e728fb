"""A recipe is a list of named steps run in order, each writing its artifacts under ``runs/<recipe>/<step>/``.

A finished step leaves ``runs/<recipe>/<step>/done.json`` (what it produced), so a rerun skips it; ``--force``
redoes every step. A failing step stops the recipe, keeps every earlier step's results, and says which step failed
and how to resume.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

StepFn = Callable[[], dict[str, Any] | None]
DONE_FILE = "done.json"


class StepFailed(RuntimeError):
    """A recipe step raised; the message names the step and how to resume."""


@dataclass
class Recipe:
    """Named steps with skip-if-done, ``--force`` and resumable failures.

    Args:
        name: The recipe's name; artifacts go under ``root / name``.
        root: Folder of all recipe runs.
    """

    name: str
    root: Path = Path("runs")
    steps: list[tuple[str, StepFn]] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        return Path(self.root) / self.name

    def step_dir(self, step: str) -> Path:
        return self.folder / step

    def step(self, name: str) -> Callable[[StepFn], StepFn]:
        """Decorator that appends a step; the function returns a JSON-able summary of what it produced."""
        if any(existing == name for existing, _ in self.steps):
            raise ValueError(f"recipe {self.name!r} already has a step named {name!r}")

        def register(fn: StepFn) -> StepFn:
            self.steps.append((name, fn))
            return fn

        return register

    def is_done(self, step: str) -> bool:
        return (self.step_dir(step) / DONE_FILE).is_file()

    def result(self, step: str) -> dict[str, Any]:
        """The summary a finished step recorded."""
        path = self.step_dir(step) / DONE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"step {step!r} of recipe {self.name!r} has not finished ({path} is missing)")
        return json.loads(path.read_text())["result"]

    def run(self, force: bool = False, only: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """Run every step not yet done (all of them with ``force``); return each step's summary."""
        unknown = sorted(set(only or []) - {name for name, _ in self.steps})
        if unknown:
            raise ValueError(f"unknown steps {unknown}; recipe {self.name!r} has {[n for n, _ in self.steps]}")
        results: dict[str, dict[str, Any]] = {}
        for index, (name, fn) in enumerate(self.steps, start=1):
            header = f"[{self.name} {index}/{len(self.steps)}] {name}"
            if (only and name not in only) or (not force and self.is_done(name)):
                if self.is_done(name):
                    print(f"{header}: done before, skipped (--force redoes it)", flush=True)
                    results[name] = self.result(name)
                continue
            print(f"{header}: running", flush=True)
            done = self.step_dir(name) / DONE_FILE
            done.unlink(missing_ok=True)
            start = time.perf_counter()
            try:
                result = fn() or {}
            except Exception as error:
                finished = [n for n, _ in self.steps[: index - 1]]
                raise StepFailed(
                    f"step {name!r} of recipe {self.name!r} failed: {type(error).__name__}: {error}\n"
                    f"Results of earlier steps {finished} are kept under {self.folder}. Fix the cause and rerun the "
                    f"same command: finished steps are skipped and the recipe resumes at {name!r}."
                ) from error
            seconds = time.perf_counter() - start
            done.parent.mkdir(parents=True, exist_ok=True)
            done.write_text(json.dumps({"step": name, "seconds": round(seconds, 2), "result": result}, indent=2) + "\n")
            print(f"{header}: finished in {seconds:.1f} s", flush=True)
            results[name] = result
        return results


def recipe_arguments(description: str) -> argparse.ArgumentParser:
    """The command-line options every recipe script shares."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--force", action="store_true", help="redo every step, even those already finished")
    parser.add_argument("--only", nargs="+", metavar="STEP", help="run only these steps")
    return parser


def main_guard(run: Callable[[], Any]) -> None:
    """Run a recipe's main function and turn a failed step into a short message and exit code 1."""
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
    from lightning_distill.cli import cli_main, deployable_model
    from lightning_distill.safe_load import load_file

    cli = cli_main(["--config", str(config), *(overrides or [])], run=False)
    from lightning_distill.pruning import resize_to_state_dict

    state = load_file(checkpoint)["state_dict"]
    resize_to_state_dict(cli.model, state)  # a structurally pruned model has smaller layers than its config says
    cli.model.load_state_dict(state)
    model = deployable_model(cli.model).eval()
    return model, cli.datamodule
