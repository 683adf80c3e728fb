"""CLINC150 from the Hugging Face Hub: BERT-base teacher, DistilBERT student, pruned, int8 and ONNX variants, report.

Needs the network (configs/clinc/*.yaml): the teacher is transformersbook/bert-base-uncased-finetuned-clinc, already
fine-tuned on CLINC150, the student distilbert-base-uncased and the data the Hub dataset clinc_oos ("plus"). Offline,
use recipes/clinc_offline.py. From the project root:
    python recipes/clinc.py [--no-prune] [--epochs N] [--force] [--only STEP ...]
Steps: teacher, distill, prune, quantize, export, benchmark, report; each writes runs/clinc_recipe/<step>/ (not the
runs/clinc/ of configs/clinc/*.yaml), and the report is runs/clinc_recipe/report.{json,md,png}. See docs/recipes.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lightning_distill.recipes.engine import Recipe, main_guard, recipe_arguments
from lightning_distill.recipes.text import (
    TextRecipeSettings,
    add_common_options,
    build,
    common_settings,
    hub_problem,
    is_local,
    missing_paths,
)

ROOT = Path(__file__).resolve().parents[2]  # the project root
TEACHER = "transformersbook/bert-base-uncased-finetuned-clinc"


def main(argv: list[str] | None = None) -> None:
    """Run the recipe with the command-line arguments ``argv`` (default: ``sys.argv[1:]``)."""
    parser = recipe_arguments(__doc__.splitlines()[0])
    parser.add_argument(
        "--teacher",
        default=TEACHER,
        help=f"fine-tuned teacher: Hub name (default {TEACHER}), save_pretrained folder, or Lightning checkpoint of "
        "configs/clinc/teacher.yaml",
    )
    parser.add_argument("--fit-teacher", action="store_true", help="fine-tune --teacher-base instead of --teacher")
    parser.add_argument("--teacher-base", default="bert-base-uncased", help="what --fit-teacher fine-tunes")
    parser.add_argument("--student", default="distilbert-base-uncased", help="checkpoint the student starts from")
    parser.add_argument("--tokenizer", help="the student's tokenizer (default: --student)")
    parser.add_argument("--dataset", default="clinc_oos", help="Hub dataset (default clinc_oos), or a local folder")
    parser.add_argument("--dataset-config", default="plus", help="its configuration (default plus; none: no config)")
    add_common_options(parser)
    parser.set_defaults(prune=True, offset_class="oos")
    args = parser.parse_args(argv)

    teacher = None if args.fit_teacher else args.teacher
    tokenizer = args.tokenizer or args.student
    models = {"--student": args.student, "--tokenizer": tokenizer}
    models |= {"--teacher-base": args.teacher_base} if teacher is None else {"--teacher": teacher}
    # Before any training: local paths must exist, and the Hub must answer for the rest.
    problems = missing_paths({option: name for option, name in models.items() if is_local(name)})
    if not problems:
        why = hub_problem(models, None if is_local(args.dataset) else args.dataset)
        if why:
            hub = sorted({name for name in [*models.values(), args.dataset] if not is_local(name)})
            problems.append(
                f"{why}.\n  recipes/clinc.py needs the Hugging Face Hub (or its local cache) for {', '.join(hub)}. "
                "Offline, run recipes/clinc_offline.py instead: the same steps on ../shared data and MiniLM."
            )
    if problems:
        parser.error("cannot start, nothing was run:\n  " + "\n  ".join(problems))

    settings = TextRecipeSettings(
        configs=str(ROOT / "configs" / "clinc"),
        title="CLINC150 (Hub): BERT-base teacher vs. compressed DistilBERT students",
        data={
            "dataset": args.dataset,
            "dataset_config": None if args.dataset_config == "none" else args.dataset_config,
        },
        tokenizer=tokenizer,
        teacher=teacher,
        teacher_base=args.teacher_base,
        teacher_tokenizer=args.teacher_base,
        student_base=args.student,
        **common_settings(args),
        command=["python", "recipes/clinc.py", *(sys.argv[1:] if argv is None else argv)],
    )
    recipe = build(Recipe("clinc_recipe", root=Path(args.runs)), settings)
    recipe.run(force=args.force, only=args.only)


if __name__ == "__main__":
    main_guard(main)
