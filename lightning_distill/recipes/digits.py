"""Digits quickstart: fit a teacher, distill a student (and train the same student from scratch), benchmark, report.

Offline and under a minute on 2 cores: the data is scikit-learn's bundled 8x8 digits.
Run from the project root: python recipes/digits.py [--force] [--only STEP ...]
Writes runs/digits_recipe/<step>/ for each step and runs/digits_recipe/report.{json,md,png}: a folder of its own, so
the recipe and `lightning-distill fit --config configs/digits/<step>.yaml` (which writes runs/digits/<step>/) never
overwrite each other's checkpoints.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from lightning_distill.core.benchmark import write_report
from lightning_distill.lightning.cli import cli_main, output_arguments
from lightning_distill.recipes.engine import Recipe, main_guard, recipe_arguments

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "digits"  # configs/ of the project root
# Models this small run 4x faster on one intra-op thread than on two (thread hand-offs cost more than the math); each
# fit's saved config.yaml records it.
QUIET = ["--trainer.enable_progress_bar=false", "--num_threads=1"]


def build(recipe: Recipe) -> Recipe:
    bench = recipe.step_dir("benchmark") / "rows.json"

    def config_args(step: str) -> list[str]:
        """``configs/digits/<step>.yaml`` with its outputs, and the teacher it reads, moved into the recipe's folder."""
        path = CONFIGS / f"{step}.yaml"
        folder = recipe.step_dir(step)
        args = [
            "--config",
            str(path),
            *output_arguments(yaml.safe_load(path.read_text()), folder, recipe.folder, folder / "checkpoints"),
        ]
        if step == "distill":
            args.append(f"--model.init_args.teacher_checkpoint={recipe.result('teacher')['checkpoint']}")
        return args

    def fit(config: str) -> dict:
        cli = cli_main(["fit", *config_args(config), *QUIET])
        checkpoint = cli.trainer.checkpoint_callback
        return {"checkpoint": checkpoint.best_model_path, "best_val_acc": float(checkpoint.best_model_score)}

    # Each step declares the config it reads, and distill the teacher checkpoint that distill.yaml names: a changed
    # input redoes the step and every later one (recipe.result calls are recorded without being declared).
    recipe.step("teacher", configs=[CONFIGS / "teacher.yaml"])(lambda: fit("teacher"))
    recipe.step("student", configs=[CONFIGS / "student.yaml"])(lambda: fit("student"))
    recipe.step("distill", reads=["teacher"], configs=[CONFIGS / "distill.yaml"])(lambda: fit("distill"))

    @recipe.step("benchmark", configs=[CONFIGS / f"{config}.yaml" for config in ("teacher", "student", "distill")])
    def benchmark() -> dict:
        bench.unlink(missing_ok=True)
        for name, config, step in (
            ("teacher", "teacher", "teacher"),
            ("student (scratch)", "student", "student"),
            ("student (distilled)", "distill", "distill"),
        ):
            args = [*config_args(config), "--ckpt_path", recipe.result(step)["checkpoint"]]
            cli_main(["benchmark", *args, "--name", name, "--output", str(bench)])
        return {"rows": str(bench)}

    @recipe.step("report", reads=["benchmark"])
    def report() -> dict:
        import json

        rows = json.loads(bench.read_text())
        folder = write_report(rows, recipe.folder, title="digits: teacher vs. student", reference="teacher")
        print((folder / "report.md").read_text())
        return {"report": str(folder / "report.md")}

    return recipe


def main(argv: list[str] | None = None) -> None:
    """Run the recipe with the command-line arguments ``argv`` (default: ``sys.argv[1:]``)."""
    args = recipe_arguments(__doc__.splitlines()[0]).parse_args(argv)
    build(Recipe("digits_recipe")).run(force=args.force, only=args.only)


if __name__ == "__main__":
    main_guard(main)
