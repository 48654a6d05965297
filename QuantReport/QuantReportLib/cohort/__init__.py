"""Cohorts: many cases on one engine (this machine or Dask distributed), a manifest to resume by, one table.

``quantreport batch`` is :func:`runCohort`; ``quantreport table`` is :func:`tableFromSrs`.
"""

from ..batch import caseKey
from .engines import ENGINES, DaskEngine, Engine, LocalEngine, Task, makeEngine
from .manifest import Manifest, caseFingerprint, manifestPath
from .runner import CohortOptions, CohortRun, runCase, runCohort
from .table import CASE_IDS, TABLE_COLUMNS, rowsFromSr, tableFromSrs, writeCohortTable

__all__ = [
    "CASE_IDS", "ENGINES", "TABLE_COLUMNS", "CohortOptions", "CohortRun", "DaskEngine", "Engine", "LocalEngine",
    "Manifest", "Task", "caseFingerprint", "caseKey", "makeEngine", "manifestPath", "rowsFromSr", "runCase",
    "runCohort", "tableFromSrs", "writeCohortTable",
]
