"""Everything of QuantReport that imports slicer, qt, vtk or MRML; the rest of ``QuantReportLib`` imports none.

Importable inside 3D Slicer, and headless where the ``slicer-core`` wheels
are installed (as trame-slicer uses them).  :mod:`.nodes` converts MRML nodes
to and from the core's data types; :mod:`.logic` is the report workflow on a
scene, which the module's ``QuantReportLogic`` exposes in Slicer and the tests
drive headless; :mod:`.host` is the Slicer application (package installer,
scene, DICOM database); :mod:`.plugins` are the DICOM browser plugins;
:mod:`.scenarios` the workflow shared by pytest and the Slicer self-test.
This file imports none of them, so that registering the DICOM plugins at
Slicer's startup loads nothing heavy.
"""
