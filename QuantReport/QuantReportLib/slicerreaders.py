"""What 3D Slicer's own DICOM readers need from the SEG and SR QuantReport writes.

Slicer 5.12 and later load SEG and TID 1500 SR with ``DICOMSegmentationPlugin``
and ``DICOMTID1500Plugin`` (Modules/Scripted/DICOMPlugins), which convert with
dcmqi (``segimage2itkimage --mergeSegments``, ``tid1500reader``).  Those readers
make assumptions that the standard does not, and QuantReport writes so that
they hold by default.  Read against Slicer 5.12.3 and Slicer main (the same
code for these paths) with the dcmqi 0.4.0 wheel (dcmqi 1.5.4) Slicer 5.12
bundles:

* ``DICOMSegmentationPlugin.load`` pairs the i-th segment description of each
  labelmap dcmqi writes with the i-th segment that
  ``ImportLabelmapToSegmentationNode`` creates, and that function creates no
  segment for a label value with no voxel.  One empty segment shifts every
  later name (and color, terminology) onto the next segment's voxels and
  drops the last; ``DICOMTID1500Plugin.assignTrackingUniqueIdentifier`` then
  raises IndexError (one measurement group more than segments).  So empty
  segments are not written by default (:func:`withoutEmptySegments`).
* ``assignTrackingUniqueIdentifier`` gives the i-th measurement group's
  tracking UID to the i-th segment of the segmentation node, and dcmqi merges
  overlapping segments into several labelmaps (DCMTK ``OverlapUtil``
  ``getNonOverlappingSegments``), so the node's segment order is not segment
  number order.  The SR lists its measurement groups in that order
  (:func:`slicerSegmentOrder`).
* ``DICOMTID1500Plugin`` follows an SR's evidence only to Segmentation Storage
  (``UID_SegmentationStorage``), not to Label Map Segmentation Storage, and
  reads an SR holding any TID 1410 group with an Image Region as planar
  annotations only (``containsPlanarAnnotations``), whose table needs a
  Finding Site in every group (``createPolylineTable``).  Those options say
  so when used (:func:`optionWarnings`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .model import Segment, Segmentation

EMPTY_SEGMENTS_NOTE = ("Slicer's DICOMSegmentationPlugin puts the names of the following segments on the wrong "
                       "voxels when a SEG holds an empty segment")
LABELMAP_SEG_WARNING = ("3D Slicer's DICOMTID1500Plugin (5.12 and later) does not follow an SR's reference to a "
                        "LABELMAP SEG: loaded there, the measurement table is linked to no segmentation (load "
                        "the SEG first, or write BINARY)")
OHIF_COMPANIONS_WARNING = ("3D Slicer's DICOMTID1500Plugin (5.12 and later) reads an SR with OHIF companion groups "
                           "as planar annotations only: it shows the long axes, not the segmentation or the "
                           "measurement table, and fails when a segment has no anatomic region (finding site)")


def withoutEmptySegments(segmentation: Segmentation) -> tuple[Segmentation, tuple[Segment, ...]]:
    """The segments that hold voxels, renumbered 1..N in number order, and the empty ones left out.

    Renumbering keeps BINARY SEG segment numbers contiguous from 1 (PS3.3
    C.8.20.2.3); tracking identifiers and UIDs, which tie a segment to its
    measurement group across reports, are kept.
    """
    fractions = segmentation.fractions
    if fractions is None:
        counts = segmentation.voxelCounts()
        has_voxels = {number: counts[number] > 0 for number in counts}
    else:  # a FRACTIONAL SEG has frames wherever a value is not 0
        has_voxels = {number: bool(values.any()) for number, values in fractions.values.items()}
    empty = tuple(segment for segment in segmentation.segments if not has_voxels[segment.number])
    if not empty:
        return segmentation, ()
    kept = sorted(((segment, placement) for segment, placement in zip(segmentation.segments, segmentation.placement,
                                                                       strict=True) if has_voxels[segment.number]),
                  key=lambda pair: pair[0].number)
    segments = tuple(segment.replace(number=number) for number, (segment, _) in enumerate(kept, 1))
    layers_used = sorted({layer for _, (layer, _) in kept})
    new_index = {old: new for new, old in enumerate(layers_used)}
    layers = tuple(segmentation.layers[old] for old in layers_used) or (np.zeros_like(segmentation.layers[0]),)
    placement = tuple((new_index[layer], value) for _, (layer, value) in kept)
    if fractions is not None:
        fractions = dataclasses.replace(fractions, values={
            number: fractions.values[segment.number] for number, (segment, _) in enumerate(kept, 1)})
    return Segmentation(segmentation.geometry, segments, layers, placement, fractions), empty


def slicerSegmentOrder(segmentation: Segmentation) -> list[int]:
    """Segment numbers in the order Slicer's DICOMSegmentationPlugin creates the segments of a BINARY SEG.

    ``segimage2itkimage --mergeSegments`` writes one labelmap per group of
    mutually non-overlapping segments, and Slicer imports them in turn, each
    in label (segment number) order.  DCMTK's ``OverlapUtil::getNonOverlappingSegments``
    (dcmqi 1.5.4 to 1.5.7) puts into the first group every segment, in number
    order, that overlaps no segment already in it; each segment that overlaps
    one gets a group of its own (its overlap flag is never reset between
    groups, so no later group takes a second segment).  Overlap is by voxel.
    """
    numbers = sorted(segment.number for segment in segmentation.segments)
    if not segmentation.overlapping:
        # No voxel is in two segments, so none overlaps the first group: it takes them all, in number order
        # (one pass per layer at most, where the walk below builds a full-volume mask per segment).
        return numbers
    first: list[int] = []
    union = np.zeros(segmentation.geometry.shape, dtype=bool)
    others: list[int] = []
    for number in numbers:
        mask = segmentation.mask(number)
        if np.any(mask & union):
            others.append(number)
        else:
            first.append(number)
            union |= mask
    return first + others


def optionWarnings(*, labelmap_seg: bool, ohif_companions: bool) -> tuple[str, ...]:
    """What a known reader cannot read of a report written with these options."""
    warnings = []
    if labelmap_seg:
        warnings.append(LABELMAP_SEG_WARNING)
    if ohif_companions:
        warnings.append(OHIF_COMPANIONS_WARNING)
    return tuple(warnings)
