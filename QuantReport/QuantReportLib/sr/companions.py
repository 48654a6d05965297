"""Companion groups for viewers that draw coordinates (OHIF): each segment's centroid and long axis.

OHIF Viewer v3 draws SR measurements only from coordinates (a SCOORD/SCOORD3D in the group); a TID 1411 group,
whose region is a SEG segment, shows there as text at best.  So after the TID
1411 groups each non-empty segment can get two TID 1410 Planar ROI groups, with
the segment's Finding, Finding Category and Finding Site:

- "<tracking identifier> centroid": an Image Region SCOORD POINT, Geometric
  purpose of region (CID 219) "Center of Mass" (128138, DCM).  The point is the
  centroid (mean voxel index, the ``centroid_l/p/s`` of :mod:`QuantReportLib.measurements`)
  projected along the slice axis onto the nearest source image, which the
  SCOORD references (SELECTED FROM).
- "<tracking identifier> long axis": an Image Region SCOORD POLYLINE of two
  points, Geometric purpose of region "Long axis" (103339001, SCT), and a NUM
  "Long axis" in mm: on the slice with the most segment voxels (ties: nearest
  the centroid, then lowest), the largest distance between the centres of two
  segment voxels (:func:`longAxis`), the line joining those centres.  A
  segment with no slice of two voxels gets no long axis.

SCOORD is 2D on a source image rather than SCOORD3D: every OHIF v3 release
draws SCOORD, only recent ones SCOORD3D (and those match SCOORD3D points to
images assuming axial slices).  Each companion has its own Tracking UID,
derived from the segment's (stable across amendments): OHIF merges all groups
sharing a Tracking UID into one annotation drawn from the first coordinate
item only, so sharing the segment's UID would hide the long axis.  OHIF also
needs a TID 1600 Image Library (it fails without one), so the library then
lists at least the images the companions are drawn on.  :func:`isCompanionGroup`
recognises companions by TID 1410 + those two geometric purposes.  They are off
by default: 3D Slicer's QuantitativeReporting (DICOMTID1500Plugin) builds its
table from dcmqi's ``tid1500reader`` output and reads ``ReferencedSegment``
from every group, which a group with image coordinates does not have.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from ..dicomio.identity import MILLIMETER
from ..errors import GeometryError, InvalidInputError, NotFoundError
from ..measurements.geometry import centroidIjk, longAxis
from ..measurements.quantities import LONG_AXIS, LONG_AXIS_METHOD
from ..model import Code, MeasurementTable, Segmentation, Terminology, Volume
from .content import Concepts, conceptName, findingSite

#: "Geometric purpose of region" (TID 1410, CID 219) of the centroid companion group.
CENTER_OF_MASS = Code("128138", "DCM", "Center of Mass")
#: The long axis companion group's "Geometric purpose of region" is the concept name of its length:
#: :data:`~QuantReportLib.measurements.quantities.LONG_AXIS`.
#: The geometric purposes that mark a TID 1410 group as a companion of a TID 1411 group.
COMPANION_PURPOSES = frozenset({(CENTER_OF_MASS.value, CENTER_OF_MASS.scheme), (LONG_AXIS.value, LONG_AXIS.scheme)})
_GEOMETRIC_PURPOSE = ("130400", "DCM")


def isCompanionGroup(item: Dataset) -> bool:
    """Whether a Measurement Group content item is a companion group written by ``ohif_companions``.

    A companion is a TID 1410 group whose "Geometric purpose of region"
    (130400, DCM) is :data:`CENTER_OF_MASS` or :data:`LONG_AXIS`.  It repeats
    geometry of a segment that a TID 1411 group already reports, so a reader
    that builds one table row per segment skips it.
    """
    templates = item.get("ContentTemplateSequence")
    if not templates or str(templates[0].get("TemplateIdentifier", "")) != "1410":
        return False
    for child in item.get("ContentSequence", []):
        if child.get("ValueType") == "CODE" and conceptName(child) == _GEOMETRIC_PURPOSE:
            concept = child.ConceptCodeSequence[0]
            return (str(concept.CodeValue), str(concept.CodingSchemeDesignator)) in COMPANION_PURPOSES
    return False


def checkCompanionSegmentation(segmentation: Segmentation | None, volume: Volume, numbers: list[int]
                               ) -> Segmentation:
    """``segmentation`` when it holds the table's segments on the volume's grid, as the companions need."""
    if segmentation is None:
        raise InvalidInputError("OHIF companion groups need the segmentation (the long axis is measured on it)",
                                volume.series_instance_uid)
    if not segmentation.geometry.matches(volume.geometry):
        raise GeometryError("the segmentation is not on the grid of the image series", volume.series_instance_uid)
    known = {segment.number for segment in segmentation.segments}
    for number in numbers:
        if number not in known:
            raise NotFoundError(f"segment {number} of the measurement table is not in the segmentation",
                                volume.series_instance_uid)
    return segmentation


def _companionUid(tracking_uid: str, kind: str) -> str:
    """A tracking UID of its own for a companion, derived from the segment's so that it is stable across amendments."""
    return generate_uid(entropy_srcs=[tracking_uid, kind])


def companionGroups(table: MeasurementTable, tracking: list[tuple[str, str]], segmentation: Segmentation,
                     volume: Volume, time_point: str | None, concepts: Concepts
                     ) -> tuple[list[hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations], list[int]]:
    """The centroid and long axis groups of every non-empty segment, and the slices they are drawn on."""
    groups = []
    slices: list[int] = []
    for row, (identifier, uid) in zip(table.rows, tracking, strict=True):
        mask = segmentation.mask(row.segment.number)
        centre = centroidIjk(mask)
        if centre is None:
            continue  # an empty segment has no geometry to show
        k = int(np.floor(centre[2] + 0.5))
        groups.append(_companionGroup(
            row.segment.terminology, f"{identifier} centroid", _companionUid(uid, "centroid"), CENTER_OF_MASS,
            hd.sr.GraphicTypeValues.POINT, [centre[:2]], volume, k, time_point, [], concepts))
        slices.append(k)
        axis = longAxis(mask, volume.geometry)
        if axis is None:
            continue
        length = hd.sr.Measurement(name=concepts(LONG_AXIS), value=axis.length_mm, unit=concepts(MILLIMETER),
                                   method=concepts(LONG_AXIS_METHOD))
        groups.append(_companionGroup(
            row.segment.terminology, f"{identifier} long axis", _companionUid(uid, "long axis"), LONG_AXIS,
            hd.sr.GraphicTypeValues.POLYLINE, [axis.first, axis.second], volume, axis.slice_index, time_point,
            [length], concepts))
        slices.append(axis.slice_index)
    return groups, slices


def _companionGroup(terminology: Terminology, identifier: str, uid: str, purpose: Code,
                    graphic_type: hd.sr.GraphicTypeValues, points_ij: list, volume: Volume, k: int,
                    time_point: str | None, measurements: list[hd.sr.Measurement], concepts: Concepts
                    ) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """TID 1410 with an image region (SCOORD) on source slice ``k``.

    SCOORD pixel coordinates are (column, row) with the top left corner of
    the top left pixel at (0, 0) (PS3.3 C.18.6.1.1), so the centre of voxel
    ``(i, j)`` is ``(i + 0.5, j + 0.5)``.
    """
    image = volume.source_images[k]
    region = hd.sr.ImageRegion(
        graphic_type=graphic_type,
        graphic_data=np.asarray(points_ij, dtype=np.float64) + 0.5,
        source_image=hd.sr.SourceImageForRegion(
            image.sop_class_uid, image.sop_instance_uid,
            None if image.frame_number is None else [int(image.frame_number)]),
    )
    finding_sites = None
    if terminology.anatomic_region is not None:
        finding_sites = [findingSite(terminology.anatomic_region, terminology.anatomic_region_modifier, concepts)]
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uid, identifier=identifier),
        referenced_region=region,
        time_point_context=hd.sr.TimePointContext(time_point) if time_point else None,
        finding_type=concepts(terminology.type),
        finding_category=concepts(terminology.category),
        finding_sites=finding_sites,
        measurements=measurements or None,
        geometric_purpose=concepts(purpose),
    )


def libraryHeaders(volume: Volume, slices: list[int]) -> list[Dataset]:
    """The headers of the images behind ``slices`` (once each), for the TID 1600 Image Library."""
    headers = {str(header.SOPInstanceUID): header for header in volume.headers}
    wanted: dict[str, None] = {}
    for k in sorted(set(slices)):
        wanted.setdefault(volume.source_images[k].sop_instance_uid, None)
    missing = [uid for uid in wanted if uid not in headers]
    if missing:
        raise InvalidInputError(f"no header for source image {missing[0]}", volume.series_instance_uid)
    return [headers[uid] for uid in wanted]
