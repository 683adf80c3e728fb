"""Digits quickstart: fit a teacher, distill a student (and train the same student from scratch), benchmark, report.

The recipe lives in :mod:`lightning_distill.recipes.digits`;
run from the project root: ``python recipes/digits.py --help``.
"""

from lightning_distill.recipes.digits import main
from lightning_distill.recipes.engine import main_guard

if __name__ == "__main__":
    main_guard(main)
