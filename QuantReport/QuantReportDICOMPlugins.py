"""Hidden hook module: registers QuantReport's DICOM plugins with Slicer's DICOM module.

Slicer instantiates every scripted module class at startup; this one only adds
the plugin classes of :mod:`QuantReportLib.inslicer.plugins` to
``slicer.modules.dicomPlugins``, which the DICOM module reads when its widget
is set up.  Registering here, at module construction as Slicer's own plugins
do, rather than on ``startupCompleted()``, guarantees the plugins are there
even when the DICOM module is the startup module.
"""

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate


class QuantReportDICOMPlugins:
    """The hook Slicer discovers as a scripted module; no GUI of its own."""

    def __init__(self, parent):
        parent.title = _("QuantReport DICOM Plugins")
        parent.categories = [translate("qSlicerAbstractCoreModule", "Developer Tools.DICOM Plugins")]
        parent.contributors = ["QuantReport contributors"]
        parent.helpText = _("Loads DICOM SEG and TID 1500 SR, and exports segmentations as SEG + SR, "
                            "in the DICOM module. The user interface is in the QuantReport module.")
        parent.acknowledgementText = _("Built on highdicom and pydicom.")
        parent.dependencies = ["DICOM"]
        parent.hidden = True

        # This module may be discovered before the DICOM module, which creates the registry otherwise.
        try:
            registry = slicer.modules.dicomPlugins
        except AttributeError:
            registry = slicer.modules.dicomPlugins = {}

        from QuantReportLib.inslicer.plugins import registerPlugins

        registerPlugins(registry)
