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

__all__ = ["MatrixError", "Outcome", "RunSpec", "load_report", "plan_runs", "run_pipeline"]

#: Names imported from the runner on first use (PEP 562): the runner imports the front page and
#: with it matplotlib and seaborn, a second of CPU that ``ingest`` and ``export`` (which read only
#: the run matrix and the lock) need not pay.
_RUNNER_NAMES = {"Outcome", "plan_runs", "run_pipeline"}


def __getattr__(name: str):
    if name in _RUNNER_NAMES:
        from analysis.pipeline import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'analysis.pipeline' has no attribute {name!r}")
