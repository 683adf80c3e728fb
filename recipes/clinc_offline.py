"""CLINC150 offline: MiniLM-L6 teacher, 3-layer distilled student, half its heads/FFN pruned, int8 and ONNX, report.

The recipe lives in :mod:`lightning_distill.recipes.clinc_offline`;
run from the project root: ``python recipes/clinc_offline.py --help``.
"""

from lightning_distill.recipes.clinc_offline import main
from lightning_distill.recipes.engine import main_guard

if __name__ == "__main__":
    main_guard(main)
