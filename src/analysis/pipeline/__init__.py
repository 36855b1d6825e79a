"""The report pipeline: run matrix, execution (serial, process pool, Dask), run keys and
incremental re-runs, reviewer HTML, index page and manifest. Entry point:
``python -m analysis run`` (:mod:`analysis.pipeline.cli`), or :func:`run_pipeline`.
"""

import sys

# Why: jsonschema (imported by nbformat) imports the optional ``rfc3987_syntax`` when present,
# which compiles a Lark grammar at import time: 3-5 s of CPU in every process, more than the
# rest of the pipeline's fixed cost. nbformat's schema uses no IRI formats, so the pipeline
# tells Python that optional module is absent (jsonschema then skips only that format check).
if "rfc3987_syntax" not in sys.modules:
    sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]

from analysis.pipeline.matrix import MatrixError, RunSpec, load_report
from analysis.pipeline.runner import Outcome, plan_runs, run_pipeline

__all__ = ["MatrixError", "Outcome", "RunSpec", "load_report", "plan_runs", "run_pipeline"]
