"""CLINC150 offline: MiniLM-L6 teacher, 3-layer distilled student, half its heads/FFN pruned, int8 and ONNX, report.

No network: the data is ../shared/data/clinc_oos/plus and the teacher is fine-tuned from
../shared/models/minilm-l6-h384-uncased (configs/clinc/offline/*.yaml, the paths below as overrides). From the project
root, one CPU job at a time:
    flock /tmp/bench.lock python recipes/clinc_offline.py [--teacher runs/clinc_offline/teacher] [--force] [--only ...]
Steps: teacher, distill, prune, quantize, export, benchmark, report; each writes runs/clinc_offline/<step>/, and the
report is runs/clinc_offline/report.{json,md,png}. See docs/recipes.md for every option.
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
    missing_paths,
)

ROOT = Path(__file__).resolve().parents[2]  # the project root
SHARED = ROOT.parent / "shared"
SPLITS = ("train", "validation", "test")


def main(argv: list[str] | None = None) -> None:
    """Run the recipe with the command-line arguments ``argv`` (default: ``sys.argv[1:]``)."""
    parser = recipe_arguments(__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED / "data" / "clinc_oos" / "plus"), help="folder of {split}.parquet")
    parser.add_argument(
        "--model",
        default=str(SHARED / "models" / "minilm-l6-h384-uncased"),
        help="pretrained encoder the teacher is fine-tuned from (the student too, with --student-from model)",
    )
    parser.add_argument("--tokenizer", help="tokenizer of teacher and student (default: --model)")
    parser.add_argument(
        "--teacher",
        help="a fine-tuned teacher instead of the teacher fit: a save_pretrained folder (e.g. "
        "runs/clinc_offline/teacher from benchmarks/clinc_offline.py) or a Lightning checkpoint of "
        "configs/clinc/offline/teacher.yaml",
    )
    parser.add_argument(
        "--layers", type=int, nargs="+", default=[1, 3, 5], help="teacher layers the student keeps (default 1 3 5)"
    )
    parser.add_argument(
        "--student-from",
        choices=["teacher", "model"],
        default="teacher",
        help="cut the student from the fine-tuned teacher (default: its layers and trained head) or from --model",
    )
    parser.add_argument(
        "--configs",
        default=str(ROOT / "configs" / "clinc" / "offline"),
        help="folder with the teacher.yaml and distill.yaml the fits start from (default: configs/clinc/offline)",
    )
    add_common_options(parser)
    parser.set_defaults(prune=True, offset_class="oos")
    args = parser.parse_args(argv)

    data_files = {split: str(Path(args.data) / f"{split}.parquet") for split in SPLITS}
    tokenizer = args.tokenizer or args.model
    # Before any training: name every input that is missing.
    missing = missing_paths(
        {
            **{f"--data ({split} split):": path for split, path in data_files.items()},
            "--model": args.model,
            "--tokenizer": tokenizer,
            "--teacher": args.teacher,
        }
    )
    if args.teacher and Path(args.teacher).is_dir() and not (Path(args.teacher) / "config.json").is_file():
        missing.append(f"--teacher {args.teacher} holds no config.json: not a folder written by save_pretrained")
    if missing:
        parser.error("missing inputs, nothing was run:\n  " + "\n  ".join(missing))

    settings = TextRecipeSettings(
        configs=args.configs,
        title="CLINC150 offline: MiniLM-L6 teacher vs. compressed 3-layer students",
        data={"data_files": data_files},
        tokenizer=tokenizer,
        teacher=args.teacher,
        teacher_base=args.model,
        student_base=None if args.student_from == "teacher" else args.model,
        student_layers=args.layers,
        **common_settings(args),
        command=["python", "recipes/clinc_offline.py", *(sys.argv[1:] if argv is None else argv)],
    )
    recipe = build(Recipe("clinc_offline", root=Path(args.runs)), settings)
    recipe.run(force=args.force, only=args.only)


if __name__ == "__main__":
    main_guard(main)
