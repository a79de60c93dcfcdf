"""`facemend evaluate`: cached test sets, baselines/models, metrics, Table 1 and Fig. 7 (§5).

- `build_testset` (testsets.py): BFR (eq. 13), SR x8, SR x16 inputs from aligned HQ faces, cached.
- `make_restorer` (methods.py): identity / bicubic / lanczos baselines and trained models.
- `evaluate` (runner.py): scores one method, writes results.json, results.md, fig7a/b, grids.
- `compare` (report.py): merges run folders into one table.
"""

from facemend.evaluation.features import dlib_native_embedder, face_embedder
from facemend.evaluation.methods import Restorer, make_restorer
from facemend.evaluation.report import compare, load_run, run_markdown
from facemend.evaluation.runner import evaluate
from facemend.evaluation.testsets import TestSet, build_testset, load_identities

__all__ = [
    "Restorer",
    "TestSet",
    "build_testset",
    "compare",
    "dlib_native_embedder",
    "evaluate",
    "face_embedder",
    "load_identities",
    "load_run",
    "make_restorer",
    "run_markdown",
]
