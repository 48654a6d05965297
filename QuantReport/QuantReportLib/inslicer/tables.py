"""Measurement tables as MRML table nodes, and back.

The columns carry ``DICOM.QuantityCode``, ``DICOM.UnitsCode``,
``DICOM.DerivationCode`` and ``DICOM.MeasurementMethodCode`` column
properties in ``vtkCodedEntry`` string form, as Slicer's ``SegmentStatistics``
exports them, so that tables made here and Slicer's are interchangeable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import slicer
from vtkmodules.util import numpy_support
from vtkmodules.vtkCommonCore import vtkStringArray

from ..errors import InvalidInputError
from ..model import Code, Measurement, MeasurementTable, Quantity, Segment, SegmentMeasurements
from .nodes import codedEntry

SEGMENT_COLUMN = "Segment"
"""Name of the first table column, as ``SegmentStatisticsLogic.segmentColumnName``."""


def tableNodeFromMeasurementTable(scene: Any, table: MeasurementTable, tableNode: Any = None) -> Any:
    """Write ``table`` to a table node, in the layout of ``SegmentStatistics``' ``exportToTable``.

    The first column, ``Segment``, holds segment labels; then one double
    column per quantity, named by the quantity's ``key`` (or its column title)
    and titled by its column title, with the unit code value as unit label
    and the codes as column properties ``DICOM.QuantityCode``,
    ``DICOM.UnitsCode``, ``DICOM.DerivationCode`` and
    ``DICOM.MeasurementMethodCode`` (``vtkCodedEntry`` strings,
    ``CodeValue:...|CodingSchemeDesignator:...|CodeMeaning:...``).  A segment
    without a value for a quantity gets NaN, as in SegmentStatistics.

    Parameters
    ----------
    scene:
        The ``vtkMRMLScene``.
    table:
        The measurements.
    tableNode:
        A table node to overwrite; a new one is added when omitted.

    Raises
    ------
    InvalidInputError
        When two quantities would get the same column name.
    """
    quantities = table.quantities
    names = [quantity.key or quantity.column for quantity in quantities]
    duplicates = sorted({name for name in names if names.count(name) > 1 or name == SEGMENT_COLUMN})
    if duplicates:
        raise InvalidInputError(f"quantities share the column names {duplicates}")
    node = tableNode or scene.AddNewNodeByClass("vtkMRMLTableNode", "Measurements")
    was_modifying = node.StartModify()
    try:
        node.RemoveAllColumns()
        labels = vtkStringArray()
        labels.SetName(SEGMENT_COLUMN)
        for row in table.rows:
            labels.InsertNextValue(row.segment.label)
        node.AddColumn(labels)
        for quantity, name in zip(quantities, names, strict=True):
            values = np.array([_valueOrNan(row, quantity) for row in table.rows], dtype=np.float64)
            column = numpy_support.numpy_to_vtk(values, deep=True)  # float64 -> vtkDoubleArray
            column.SetName(name)
            node.AddColumn(column)
            node.SetColumnTitle(name, quantity.column)
            node.SetColumnUnitLabel(name, quantity.unit.value)
            node.SetColumnDescription(name, quantity.name.meaning)
            codes = {
                "DICOM.QuantityCode": quantity.name,
                "DICOM.UnitsCode": quantity.unit,
                "DICOM.DerivationCode": quantity.derivation,
                "DICOM.MeasurementMethodCode": quantity.method,
            }
            for property_name, code in codes.items():
                if code is not None:
                    node.SetColumnProperty(name, property_name, codedEntry(code).GetAsString())
    finally:
        node.EndModify(was_modifying)
    return node


def measurementTableFromTableNode(node: Any, segments: Sequence[Segment]) -> MeasurementTable:
    """Read the measurements of a table node written as ``SegmentStatistics`` writes them.

    Rows are matched to ``segments`` by label (the ``Segment`` column).  Every
    scalar column with ``DICOM.QuantityCode`` and ``DICOM.UnitsCode``
    properties becomes a quantity; other columns (string, multi-component,
    uncoded) are skipped.  NaN cells are missing measurements.

    Raises
    ------
    InvalidInputError
        When there is no ``Segment`` column, segment labels are not unique, or
        a row's label is not one of ``segments``.
    """
    vtk_table = node.GetTable()
    labels = vtk_table.GetColumnByName(SEGMENT_COLUMN)
    if labels is None:
        raise InvalidInputError(f"table has no {SEGMENT_COLUMN!r} column", node.GetName())
    by_label = {segment.label: segment for segment in segments}
    if len(by_label) != len(segments):
        raise InvalidInputError("segment labels are not unique, table rows cannot be matched", node.GetName())

    columns: list[tuple[Quantity, np.ndarray]] = []
    for index in range(vtk_table.GetNumberOfColumns()):
        column = vtk_table.GetColumn(index)
        name = column.GetName()
        quantity = _quantityOfColumn(node, name)
        if quantity is None or not column.IsNumeric() or column.GetNumberOfComponents() != 1:
            continue
        columns.append((quantity, numpy_support.vtk_to_numpy(column).astype(np.float64)))

    rows = []
    for row_index in range(vtk_table.GetNumberOfRows()):
        label = labels.GetValue(row_index)
        if label not in by_label:
            raise InvalidInputError(f"row {row_index}: no segment labelled {label!r}", node.GetName())
        measurements = tuple(
            Measurement(quantity, float(values[row_index]))
            for quantity, values in columns
            if not math.isnan(values[row_index])
        )
        rows.append(SegmentMeasurements(by_label[label], measurements))
    return MeasurementTable(tuple(rows))


def _quantityOfColumn(node: Any, name: str) -> Quantity | None:
    name_code = _codeFromEntryString(node.GetColumnProperty(name, "DICOM.QuantityCode"))
    unit = _codeFromEntryString(node.GetColumnProperty(name, "DICOM.UnitsCode"))
    if name_code is None or unit is None:
        return None
    return Quantity(
        name=name_code,
        unit=unit,
        derivation=_codeFromEntryString(node.GetColumnProperty(name, "DICOM.DerivationCode")),
        method=_codeFromEntryString(node.GetColumnProperty(name, "DICOM.MeasurementMethodCode")),
        key=name,
        label=node.GetColumnTitle(name) or "",
    )


def _valueOrNan(row: SegmentMeasurements, quantity: Quantity) -> float:
    for measurement in row.measurements:
        if measurement.quantity == quantity:
            return float(measurement.value)
    return math.nan


def _codeFromEntryString(text: str) -> Code | None:
    if not text:
        return None
    entry = slicer.vtkCodedEntry()
    entry.SetFromString(text)
    if not entry.GetCodeValue():
        return None
    return Code(entry.GetCodeValue(), entry.GetCodingSchemeDesignator() or "", entry.GetCodeMeaning() or "")
