"""Convert between Slicer's MRML nodes and QuantReport's data types.

Like all of :mod:`QuantReportLib.inslicer` it imports slicer and VTK, so it
can be imported only where the Slicer libraries exist (inside 3D Slicer, or
headless through the ``slicer-core`` wheels that trame-slicer uses).  Every
function takes the scene, and any module logic it needs, as an argument
instead of using the ``slicer.mrmlScene`` global, so that the same code runs
in the application and under pytest.

Coordinates: the core types use DICOM patient coordinates (LPS, PS3.3
C.7.6.2.1.1); MRML uses RAS.  The two differ by the sign of the first two
axes, so an IJK -> LPS matrix becomes IJK -> RAS by negating its first two
rows.  Arrays are numpy ``(k, j, i)`` as ``slicer.util.arrayFromVolume``.

Where the conversion writes metadata it uses the names Slicer's own DICOM
modules use, so that nodes made here and nodes loaded by Slicer's DICOM
plugins are interchangeable:

* volume node attribute ``DICOM.instanceUIDs`` (SOP Instance UIDs, one per
  file, space separated) as ``DICOMScalarVolumePlugin`` sets it;
* the series' subject hierarchy item with UID ``DICOM`` = Series Instance UID
  and ``DICOMInstanceUID`` = the instance UIDs, series attributes
  ``DICOM.Modality``, ``DICOM.SeriesNumber``, ``DICOM.FrameOfReferenceUID``,
  ``DICOM.SeriesDescription``, under patient and study items, as
  ``DICOMPlugin.addSeriesInSubjectHierarchy`` builds them;
* segment tags ``TerminologyEntry`` (``vtkSegment::GetTerminologyEntryTagName``),
  ``Description``, ``DICOM.SegmentAlgorithmType`` and ``DICOM.SegmentAlgorithmName``
  as Slicer's DICOM SEG plugin reads and writes them;
* (measurement tables: :mod:`.tables`).

QuantReport adds three segment tags of its own, for values Slicer has no
place for: :data:`SEGMENT_NUMBER_TAG` (DICOM Segment Number),
:data:`TRACKING_ID_TAG` and :data:`TRACKING_UID_TAG` (the TID 1500 tracking
identifier and UID of the segment's measurement group).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import slicer
from vtkmodules.util import numpy_support
from vtkmodules.vtkCommonCore import reference
from vtkmodules.vtkCommonDataModel import vtkImageData
from vtkmodules.vtkCommonMath import vtkMatrix4x4
from vtkmodules.vtkFiltersSources import vtkSphereSource

from ..errors import GeometryError, InvalidInputError, UnsupportedError
from ..model import (
    Code,
    Geometry,
    Segment,
    Segmentation,
    Terminology,
    Volume,
)
from ..provenance import ALGORITHM_NAME_TAG, ALGORITHM_TYPE_TAG
from ..terminology import DEFAULT_TERMINOLOGY, terminologyFromSlicerString, terminologyToSlicerString

SEGMENT_NUMBER_TAG = "QuantReport.SegmentNumber"
"""Segment tag holding the DICOM Segment Number (0062,0004) of the segment."""
TRACKING_ID_TAG = "QuantReport.TrackingIdentifier"
"""Segment tag holding the TID 1500 Tracking Identifier of the segment's measurement group."""
TRACKING_UID_TAG = "QuantReport.TrackingUID"
"""Segment tag holding the TID 1500 Tracking Unique Identifier of the segment's measurement group."""
DESCRIPTION_TAG = "Description"

INSTANCE_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"
IMAGE_SCALARS_NAME = "ImageScalars"
"""Name of the scalars of every image this adapter makes (what vtkImageData filters and Slicer's readers use)."""


# LPS <-> RAS: negate the first two axes (PS3.3 C.7.6.2.1.1 versus Slicer's RAS world).
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# Quantity and units of voxel values per modality, as DICOMPlugin.mapSOPClassUIDToDICOMQuantityAndUnits.
_VOXEL_QUANTITY = {
    "CT": Code("112031", "DCM", "Attenuation Coefficient"),
    "MR": Code("110852", "DCM", "MR signal intensity"),
}


# -- volumes ---------------------------------------------------------------------------------------


def volumeNodeFromVolume(scene: Any, volume: Volume, name: str | None = None) -> Any:
    """Add a scalar volume node holding ``volume`` to ``scene``.

    The voxel values are copied; the IJK -> RAS matrix is the volume's IJK ->
    LPS matrix with its first two rows negated.  The node is linked to its
    DICOM series as Slicer's ``DICOMScalarVolumePlugin`` links it: node
    attribute ``DICOM.instanceUIDs`` and a subject hierarchy series item (UIDs
    ``DICOM`` and ``DICOMInstanceUID``) under patient and study items, so that
    Slicer's DICOM export and :func:`seriesUidOfVolumeNode` find the series.

    Parameters
    ----------
    scene:
        The ``vtkMRMLScene`` (``slicer.mrmlScene`` in the application).
    volume:
        The loaded series.
    name:
        Node name; by default ``"<Series Number>: <Series Description>"`` as
        Slicer names loaded series.

    Returns
    -------
    vtkMRMLScalarVolumeNode
        The new node, with default display nodes.
    """
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name or _seriesNodeName(volume))
    node.SetAndObserveImageData(_imageDataFromArray(volume.array))
    node.SetIJKToRASMatrix(_vtkMatrix(_LPS_TO_RAS @ volume.geometry.ijk_to_lps))
    if volume.modality in _VOXEL_QUANTITY:
        node.SetVoxelValueQuantity(codedEntry(_VOXEL_QUANTITY[volume.modality]))
    if volume.units is not None:
        node.SetVoxelValueUnits(codedEntry(volume.units))
    instance_uids = " ".join(dict.fromkeys(image.sop_instance_uid for image in volume.source_images))
    node.SetAttribute(INSTANCE_UIDS_ATTRIBUTE, instance_uids)
    node.CreateDefaultDisplayNodes()
    _addSeriesInSubjectHierarchy(scene, node, volume, instance_uids)
    return node


def volumeFromVolumeNode(node: Any, copy: bool = True) -> tuple[np.ndarray, Geometry]:
    """The voxel array ``(k, j, i)`` and IJK -> LPS geometry of a scalar volume node.

    Parameters
    ----------
    node:
        A ``vtkMRMLScalarVolumeNode`` (or labelmap volume node) without a
        parent transform.
    copy:
        Return a copy (default).  With ``False`` the array shares memory with
        the node's image data, as ``slicer.util.arrayFromVolume`` does, and
        must not outlive it.

    Raises
    ------
    InvalidInputError
        When the node has no image data.
    UnsupportedError
        For multi-component (vector) volumes and transformed nodes.
    """
    image = node.GetImageData()
    if image is None or image.GetPointData().GetScalars() is None:
        raise InvalidInputError("volume node has no voxels", node.GetName())
    if image.GetNumberOfScalarComponents() != 1:
        raise UnsupportedError("only single-component (scalar) volumes are supported", node.GetName())
    _requireUntransformed(node)
    shape = tuple(reversed(image.GetDimensions()))
    array = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(shape)
    matrix = vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    geometry = Geometry(shape, _LPS_TO_RAS @ _numpyMatrix(matrix))
    return (array.copy() if copy else array), geometry


def seriesUidOfVolumeNode(node: Any, shNode: Any) -> str | None:
    """The Series Instance UID a node was loaded from, or ``None``.

    Reads the ``DICOM`` UID of the node's subject hierarchy item, which is
    where Slicer's DICOM plugins (``DICOMPlugin.addSeriesInSubjectHierarchy``)
    and :func:`volumeNodeFromVolume` record it.

    Parameters
    ----------
    node:
        Any data node (volume, segmentation).
    shNode:
        The scene's ``vtkMRMLSubjectHierarchyNode``
        (``vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)``).
    """
    item = shNode.GetItemByDataNode(node)
    if not item:
        return None
    return shNode.GetItemUID(item, slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMUIDName()) or None


def _addSeriesInSubjectHierarchy(scene: Any, node: Any, volume: Volume, instance_uids: str) -> None:
    """Place ``node`` in the subject hierarchy as Slicer's DICOM plugins place a loaded series."""
    constants = slicer.vtkMRMLSubjectHierarchyConstants
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    # Inside Slicer the subject hierarchy plugin logic has already made an item for the new node; headless it has not.
    item = shNode.GetItemByDataNode(node) or shNode.CreateItem(shNode.GetSceneItemID(), node)
    header = volume.headers[0] if volume.headers else None
    shNode.SetItemUID(item, constants.GetDICOMUIDName(), volume.series_instance_uid)
    shNode.SetItemUID(item, constants.GetDICOMInstanceUIDName(), instance_uids)
    series_attributes = {
        constants.GetDICOMSeriesModalityAttributeName(): volume.modality,
        constants.GetDICOMSeriesNumberAttributeName(): _headerValue(header, "SeriesNumber"),
        constants.GetDICOMFrameOfReferenceUIDAttributeName(): volume.frame_of_reference_uid or "",
        constants.GetDICOMAttributePrefix() + "SeriesDescription": volume.series_description,
    }
    for attribute, value in series_attributes.items():
        shNode.SetItemAttribute(item, attribute, value)

    # Slicer's rule: an empty Patient ID becomes "Patient-<Study Instance UID>" so that patient and study UIDs differ.
    patient_id = _headerValue(header, "PatientID") or f"Patient-{volume.study_instance_uid}"
    uid_name = constants.GetDICOMUIDName()
    new_patient = not shNode.GetItemByUID(uid_name, patient_id)
    new_study = not shNode.GetItemByUID(uid_name, volume.study_instance_uid)
    slicer.vtkSlicerSubjectHierarchyModuleLogic.InsertDicomSeriesInHierarchy(
        shNode, patient_id, volume.study_instance_uid, volume.series_instance_uid)
    if new_patient:
        patient_item = shNode.GetItemByUID(uid_name, patient_id)
        patient_name = _headerValue(header, "PatientName") or "No name"
        for attribute, value in (
            (constants.GetDICOMPatientNameAttributeName(), patient_name),
            (constants.GetDICOMPatientIDAttributeName(), patient_id),
            (constants.GetDICOMPatientSexAttributeName(), _headerValue(header, "PatientSex")),
            (constants.GetDICOMPatientBirthDateAttributeName(), _headerValue(header, "PatientBirthDate")),
        ):
            shNode.SetItemAttribute(patient_item, attribute, value)
        shNode.SetItemName(patient_item, patient_name)
    if new_study:
        study_item = shNode.GetItemByUID(uid_name, volume.study_instance_uid)
        study_description = _headerValue(header, "StudyDescription") or "No study description"
        for attribute, value in (
            (constants.GetDICOMStudyDescriptionAttributeName(), study_description),
            (constants.GetDICOMStudyInstanceUIDAttributeName(), volume.study_instance_uid),
            (constants.GetDICOMStudyIDAttributeName(), _headerValue(header, "StudyID")),
            (constants.GetDICOMStudyDateAttributeName(), _headerValue(header, "StudyDate")),
            (constants.GetDICOMStudyTimeAttributeName(), _headerValue(header, "StudyTime")),
        ):
            shNode.SetItemAttribute(study_item, attribute, value)
        shNode.SetItemName(study_item, study_description)


def _seriesNodeName(volume: Volume) -> str:
    """``DICOMPlugin.defaultSeriesNodeName``: "<Series Number>: <Series Description>"."""
    name = volume.series_description or "Unnamed Series"
    number = _headerValue(volume.headers[0] if volume.headers else None, "SeriesNumber")
    return f"{number}: {name}" if number else name


def _headerValue(header: Any, keyword: str) -> str:
    value = getattr(header, keyword, None) if header is not None else None
    return "" if value is None else str(value)


# -- segmentations ---------------------------------------------------------------------------------


def segmentationNodeFromSegmentation(
    scene: Any,
    segmentation: Segmentation,
    referenceVolumeNode: Any = None,
    terminologies_logic: Any = None,
    name: str = "Segmentation",
) -> Any:
    """Add a segmentation node holding ``segmentation`` to ``scene``.

    The source representation is a binary labelmap stored as Slicer stores
    it: each of ``segmentation.layers`` becomes one shared
    ``vtkOrientedImageData`` and each segment's label value in it is its
    placement value, so overlapping segments stay in separate layers and empty
    segments are kept.  Segment ID, name, color (0-1), terminology
    (``TerminologyEntry`` tag) and the tags listed in the module docstring are
    set from each :class:`~QuantReportLib.model.Segment`.

    Parameters
    ----------
    scene:
        The ``vtkMRMLScene``.
    segmentation:
        Segments and voxels.
    referenceVolumeNode:
        Volume whose grid becomes the segmentation's reference image geometry
        (``SetReferenceImageGeometryParameterFromVolumeNode``), the grid the
        Segment Editor edits on.  Without it the segmentation's own grid is
        the reference geometry.
    terminologies_logic:
        ``vtkSlicerTerminologiesModuleLogic``; when given, segments without a
        color get the recommended display color of their terminology type, as
        Slicer colors new segments.  Otherwise Slicer picks the color.
    name:
        Node name.

    Returns
    -------
    vtkMRMLSegmentationNode
        The new node, with default display nodes.
    """
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    vtk_segmentation = node.GetSegmentation()
    labelmap_name = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    vtk_segmentation.SetSourceRepresentationName(labelmap_name)
    ijk_to_ras = _vtkMatrix(_LPS_TO_RAS @ segmentation.geometry.ijk_to_lps)
    if referenceVolumeNode is not None:
        node.SetReferenceImageGeometryParameterFromVolumeNode(referenceVolumeNode)
    else:
        extent = _extentOfShape(segmentation.geometry.shape)
        vtk_segmentation.SetConversionParameter(
            slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(),
            slicer.vtkSegmentationConverter.SerializeImageGeometry(ijk_to_ras, extent))

    layers = []
    for layer in segmentation.layers:
        image = slicer.vtkOrientedImageData()
        image.ShallowCopy(_imageDataFromArray(layer.astype(_labelType(int(layer.max())), copy=False)))
        image.SetImageToWorldMatrix(ijk_to_ras)
        layers.append(image)

    was_modifying = node.StartModify()
    try:
        for segment, (layer_index, value) in zip(segmentation.segments, segmentation.placement, strict=True):
            vtk_segment = slicer.vtkSegment()
            _writeSegmentDescription(vtk_segment, segment, terminologies_logic)
            # Segments that hold the same image object form one shared labelmap layer (vtkSegmentation).
            vtk_segment.AddRepresentation(labelmap_name, layers[layer_index])
            vtk_segment.SetLabelValue(int(value))
            vtk_segmentation.AddSegment(vtk_segment, _segmentId(segment))
    finally:
        node.EndModify(was_modifying)
    return node


def segmentationFromSegmentationNode(node: Any, referenceVolumeNode: Any) -> Segmentation:
    """The segments of a segmentation node on the grid of ``referenceVolumeNode``.

    Each shared labelmap layer is resampled (nearest neighbour, no
    interpolation) into the reference volume's geometry and extent, which is
    what Slicer's export to DICOM does with a reference volume; on the same
    grid this is a pure crop or pad, so a node made by
    :func:`segmentationNodeFromSegmentation` gives back the same voxels, layers
    and label values, empty and overlapping segments included.

    Segment numbers come from the :data:`SEGMENT_NUMBER_TAG` tag; segments
    without a valid, unique one get the lowest free numbers in segment order
    (so an untagged segmentation is numbered 1, 2, 3, ...).  Segments without
    a terminology tag get :data:`QuantReportLib.terminology.DEFAULT_TERMINOLOGY`.

    Raises
    ------
    UnsupportedError
        When the source representation is not a binary labelmap, or a node
        is transformed.
    InvalidInputError
        When a segment's tags are invalid (an unreadable terminology entry, a
        SEMIAUTOMATIC segment without an algorithm name).
    """
    vtk_segmentation = node.GetSegmentation()
    labelmap_name = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    if vtk_segmentation.GetSourceRepresentationName() != labelmap_name:
        raise UnsupportedError(
            f"source representation is {vtk_segmentation.GetSourceRepresentationName()!r}, not a binary labelmap",
            node.GetName())
    _requireUntransformed(node)
    _requireUntransformed(referenceVolumeNode)
    reference, geometry = _referenceGeometry(referenceVolumeNode)

    segment_ids = [vtk_segmentation.GetNthSegmentID(n) for n in range(vtk_segmentation.GetNumberOfSegments())]
    numbers = _segmentNumbers([vtk_segmentation.GetSegment(segment_id) for segment_id in segment_ids])
    layer_of_segment: dict[str, int] = {}
    layers: list[np.ndarray] = []
    for layer_index in range(vtk_segmentation.GetNumberOfLayers(labelmap_name)):
        layer_image = vtk_segmentation.GetLayerDataObject(layer_index, labelmap_name)
        resampled = slicer.vtkOrientedImageData()
        if not slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
                layer_image, reference, resampled, False, False):
            raise GeometryError(f"labelmap layer {layer_index} cannot be resampled to the reference volume",
                                node.GetName())
        shape = tuple(reversed(resampled.GetDimensions()))
        layers.append(numpy_support.vtk_to_numpy(resampled.GetPointData().GetScalars()).reshape(shape).copy())
        for segment_id in vtk_segmentation.GetSegmentIDsForLayer(layer_index, labelmap_name):
            layer_of_segment[segment_id] = layer_index

    segments = []
    placement = []
    for segment_id, number in zip(segment_ids, numbers, strict=True):
        vtk_segment = vtk_segmentation.GetSegment(segment_id)
        source = f"{node.GetName()}: segment {vtk_segment.GetName()!r}"
        segments.append(_readSegmentDescription(vtk_segment, number, source))
        placement.append((layer_of_segment[segment_id], int(vtk_segment.GetLabelValue())))
    if not layers:
        layers.append(np.zeros(geometry.shape, dtype=np.uint8))
    return Segmentation(geometry, tuple(segments), tuple(layers), tuple(placement))


def addSphereSegment(node: Any, segmentId: str, name: str, center_lps: Sequence[float], radius_mm: float) -> str:
    """Add a sphere segment (a region to edit inside, as a user would draw one) to a segmentation node.

    The sphere is added as a closed surface and converted to the node's
    binary labelmap on its reference geometry by Slicer's own converters, so
    its voxels are exactly what Slicer would rasterize.
    """
    sphere = vtkSphereSource()
    sphere.SetCenter(*(_LPS_TO_RAS[:3, :3] @ np.asarray(center_lps, dtype=float)))
    sphere.SetRadius(float(radius_mm))
    sphere.SetThetaResolution(64)
    sphere.SetPhiResolution(64)
    sphere.Update()
    segment = slicer.vtkSegment()
    segment.SetName(name)
    segment.AddRepresentation(
        slicer.vtkSegmentationConverter.GetClosedSurfaceRepresentationName(), sphere.GetOutput())
    vtk_segmentation = node.GetSegmentation()
    vtk_segmentation.AddSegment(segment, segmentId)
    labelmap_name = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    if vtk_segmentation.GetSourceRepresentationName() != labelmap_name:
        raise UnsupportedError("the segmentation's source representation is not a binary labelmap", node.GetName())
    if not vtk_segmentation.CreateRepresentation(labelmap_name):
        raise GeometryError("the sphere could not be converted to a labelmap", node.GetName())
    return segmentId


def updateSegmentDescriptions(node: Any, segmentation: Segmentation) -> None:
    """Write back what saving a report assigned: each segment's number and tracking identifier and UID.

    ``segmentation`` is what :func:`segmentationFromSegmentationNode` read
    from ``node`` (same segments, same order), after the report workflow
    assigned tracking; tagging the node keeps segment numbers and tracking
    UIDs stable across later saves, so an amended report continues the same
    measurement groups.
    """
    vtk_segmentation = node.GetSegmentation()
    vtk_segments = [vtk_segmentation.GetNthSegment(n) for n in range(vtk_segmentation.GetNumberOfSegments())]
    by_number = dict(zip(_segmentNumbers(vtk_segments), vtk_segments, strict=True))
    for segment in segmentation.segments:
        vtk_segment = by_number.get(segment.number)
        if vtk_segment is None:
            raise InvalidInputError(f"segment {segment.number} is no longer in the segmentation", node.GetName())
        vtk_segment.SetTag(SEGMENT_NUMBER_TAG, str(segment.number))
        for tag, value in ((TRACKING_ID_TAG, segment.tracking_id), (TRACKING_UID_TAG, segment.tracking_uid)):
            if value:
                vtk_segment.SetTag(tag, value)


def _writeSegmentDescription(vtk_segment: Any, segment: Segment, terminologies_logic: Any) -> None:
    vtk_segment.SetName(segment.label)
    vtk_segment.SetNameAutoGenerated(False)
    vtk_segment.SetTerminology(terminologyToSlicerString(segment.terminology))
    color = segment.color
    if color is None and terminologies_logic is not None:
        color = _recommendedColor(segment.terminology, terminologies_logic)
    if color is not None:
        vtk_segment.SetColor(*(component / 255.0 for component in color))
        vtk_segment.SetColorAutoGenerated(False)
    vtk_segment.SetTag(SEGMENT_NUMBER_TAG, str(segment.number))
    vtk_segment.SetTag(ALGORITHM_TYPE_TAG, segment.algorithm_type)
    optional_tags = {
        ALGORITHM_NAME_TAG: segment.algorithm_name,
        DESCRIPTION_TAG: segment.description,
        TRACKING_ID_TAG: segment.tracking_id,
        TRACKING_UID_TAG: segment.tracking_uid,
    }
    for tag, value in optional_tags.items():
        if value:
            vtk_segment.SetTag(tag, value)


def _readSegmentDescription(vtk_segment: Any, number: int, source: str) -> Segment:
    text = vtk_segment.GetTerminology()
    terminology = terminologyFromSlicerString(text, source) if text else DEFAULT_TERMINOLOGY
    color = tuple(int(round(component * 255.0)) for component in vtk_segment.GetColor())
    return Segment(
        number=number,
        label=vtk_segment.GetName(),
        terminology=terminology,
        color=color,
        algorithm_type=tagValue(vtk_segment, ALGORITHM_TYPE_TAG) or "MANUAL",
        algorithm_name=tagValue(vtk_segment, ALGORITHM_NAME_TAG),
        description=tagValue(vtk_segment, DESCRIPTION_TAG),
        tracking_id=tagValue(vtk_segment, TRACKING_ID_TAG),
        tracking_uid=tagValue(vtk_segment, TRACKING_UID_TAG),
    )


def _segmentNumbers(vtk_segments: Sequence[Any]) -> list[int]:
    """Tagged numbers where valid and unique; the lowest free numbers, in order, for the rest."""
    tagged: list[int | None] = []
    for vtk_segment in vtk_segments:
        text = tagValue(vtk_segment, SEGMENT_NUMBER_TAG) or ""
        number = int(text) if text.isdecimal() and int(text) > 0 else None
        tagged.append(None if number in tagged else number)
    used = {number for number in tagged if number is not None}
    free = (n for n in range(1, len(vtk_segments) + len(used) + 1) if n not in used)
    return [number if number is not None else next(free) for number in tagged]


def _segmentId(segment: Segment) -> str:
    """Segment IDs are "Segment_<number>", the form Slicer gives new segments."""
    return f"Segment_{segment.number}"


def tagValue(vtk_segment: Any, name: str) -> str | None:
    """The value of a segment tag, or None when the segment has no such tag (or it is empty)."""
    value = reference("")
    vtk_segment.GetTag(name, value)
    return str(value) or None


def _recommendedColor(terminology: Terminology, terminologies_logic: Any) -> tuple[int, int, int] | None:
    """The terminology's recommended display color (PS3.3 C.8.20.2) from Slicer's loaded terminologies."""
    entry = slicer.vtkSlicerTerminologyEntry()
    if not terminologies_logic.DeserializeTerminologyEntry(terminologyToSlicerString(terminology), entry):
        return None
    if not terminologies_logic.UpdateEntryFromLoadedTerminologies(entry, [], []):
        return None
    rgb = tuple(int(component) for component in entry.GetTypeObject().GetRecommendedDisplayRGBValue())
    # 127,127,127 is vtkSlicerTerminologyType's "no recommendation" default.
    return None if rgb == (127, 127, 127) else rgb


# -- small VTK helpers -----------------------------------------------------------------------------


def codedEntry(code: Code) -> Any:
    entry = slicer.vtkCodedEntry()
    entry.SetValueSchemeMeaning(code.value, code.scheme, code.meaning)
    return entry


def _imageDataFromArray(array: np.ndarray) -> vtkImageData:
    """A deep copy of a ``(k, j, i)`` array as image data with unit spacing at the origin (MRML's convention).

    The scalars are named ``ImageScalars``, as VTK's image filters and Slicer's
    readers name them: Slicer's "Export to DICOM"
    (``DICOMSegmentationExporter.isSegmentEmpty``) looks a segment's voxels up
    by that name and calls a segment without such an array empty.
    """
    array = np.ascontiguousarray(array)
    image = vtkImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    scalars = numpy_support.numpy_to_vtk(array.ravel(), deep=True)
    scalars.SetName(IMAGE_SCALARS_NAME)
    image.GetPointData().SetScalars(scalars)
    return image


def _referenceGeometry(volumeNode: Any) -> tuple[Any, Geometry]:
    """The grid of a volume node as an (empty) oriented image and as a :class:`Geometry`."""
    image = volumeNode.GetImageData()
    if image is None:
        raise InvalidInputError("reference volume node has no voxels", volumeNode.GetName())
    matrix = vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    reference = slicer.vtkOrientedImageData()
    reference.SetExtent(image.GetExtent())
    reference.SetImageToWorldMatrix(matrix)
    return reference, Geometry(tuple(reversed(image.GetDimensions())), _LPS_TO_RAS @ _numpyMatrix(matrix))


def _requireUntransformed(node: Any) -> None:
    if node.GetParentTransformNode() is not None:
        raise UnsupportedError("transformed nodes are not supported: harden the transform first", node.GetName())


def _labelType(max_label: int) -> type[np.unsignedinteger]:
    """The smallest unsigned type for a labelmap layer: Slicer's labelmaps are unsigned char unless they need more."""
    return next(dtype for dtype in (np.uint8, np.uint16, np.uint32) if max_label <= np.iinfo(dtype).max)


def _extentOfShape(shape: tuple[int, int, int]) -> list[int]:
    return [0, shape[2] - 1, 0, shape[1] - 1, 0, shape[0] - 1]


def _vtkMatrix(matrix: np.ndarray) -> vtkMatrix4x4:
    result = vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            result.SetElement(row, column, float(matrix[row, column]))
    return result


def _numpyMatrix(matrix: vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(row, column) for column in range(4)] for row in range(4)])
