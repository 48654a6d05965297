"""QuantReport's core: DICOM database, series loading, terminology, measurements,
DICOM SEG and TID 1500 SR, usable headless and inside 3D Slicer.

This package imports no slicer, qt or vtk (except the :mod:`QuantReportLib.inslicer`
subpackage, the one place that touches Slicer). Import the submodules you need; this
file stays light so that ``quantreport --help`` starts fast.
"""

__version__ = "0.1.0"
