"""CLINC150 from the Hugging Face Hub: BERT-base teacher, DistilBERT student, pruned, int8 and ONNX variants, report.

The recipe lives in :mod:`lightning_distill.recipes.clinc`;
run from the project root: ``python recipes/clinc.py --help``.
"""

from lightning_distill.recipes.clinc import main
from lightning_distill.recipes.engine import main_guard

if __name__ == "__main__":
    main_guard(main)
