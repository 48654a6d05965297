"""The readout for archives and viewers that cannot show a SEG: Secondary Capture key images and a Key Object.

Per report, one new series of Secondary Capture images (PS3.3 A.8.1) in the
study of the report, one image per segment: the key image of the page, the
outline and summary measurements burned in.  Each lists the source image of
its key slice in Source Image Sequence (PS3.3 C.7.6.1), and is described as
derived from it.  One Key Object Selection Document (PS3.3 A.35.4, TID 2010,
title "Of Interest") in its own series selects these images, the source
images of the key slices and the SR itself, so that a viewer that shows key
images brings the pictures, the original images and the report up together.
Both are written with highdicom, in UTF-8, and are valid for dciodvfy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from ..dicomio.identity import (
    DEVICE_OBSERVER_MODEL_NAME,
    DEVICE_OBSERVER_NAME,
    DEVICE_OBSERVER_UID,
    MANUFACTURER,
    MANUFACTURER_MODEL_NAME,
    SOFTWARE_VERSIONS,
)
from ..dicomio.writing import UTF8
from ..model import Volume
from ..sr.companions import libraryHeaders
from .gather import ReadReport
from .keyimages import KeyImage
from .values import summary

SC_SERIES_NUMBER = 1002
KO_SERIES_NUMBER = 1003
SC_SERIES_DESCRIPTION = "QuantReport key images"
KO_SERIES_DESCRIPTION = "QuantReport key objects"
_DERIVATION_DESCRIPTION = "Segment outline and measurements drawn on the source image (QuantReport key image)"


def createKeyImageObjects(report: ReadReport, key_images: Mapping[int, KeyImage]) -> list[Dataset]:
    """The Secondary Capture images of a report's key images, then its Key Object Selection Document.

    Empty when the report has no key image.
    """
    if not key_images or report.volume is None:
        return []
    volume = report.volume
    series_uid = generate_uid()
    captures = []
    lesions = {lesion.segment_number: lesion for lesion in report.lesions}
    for number, (segment_number, image) in enumerate(sorted(key_images.items()), 1):
        lesion = lesions[segment_number]
        captures.append(_secondaryCapture(volume, image, series_uid, number, lesion.label,
                                          "; ".join(f"{name} {value}" for name, value in summary(lesion.measurements))))
    sources = libraryHeaders(volume, [image.slice_index for image in key_images.values()])
    return [*captures, _keyObjectSelection(report, captures, sources)]


def _secondaryCapture(volume: Volume, image: KeyImage, series_uid: str, instance_number: int, label: str,
                      measured: str) -> Dataset:
    source = libraryHeaders(volume, [image.slice_index])[0]
    capture = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=np.ascontiguousarray(image.rgb),
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=series_uid,
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        patient_orientation=image.orientation,
        transfer_syntax_uid=ExplicitVRLittleEndian,
    )
    capture.SpecificCharacterSet = UTF8  # labels in any language (values copied from the source are decoded)
    capture.SeriesDescription = SC_SERIES_DESCRIPTION
    # Laterality (Type 2C, General Series) is needed for a paired body part: the source's body part and
    # laterality are kept, and without a known body part the laterality is present and empty (unknown).
    if source.get("BodyPartExamined"):
        capture.BodyPartExamined = source.BodyPartExamined
    if source.get("Laterality") or not source.get("BodyPartExamined"):
        capture.Laterality = source.get("Laterality", "") or ""
    capture.ManufacturerModelName = MANUFACTURER_MODEL_NAME
    capture.SoftwareVersions = SOFTWARE_VERSIONS
    capture.ConversionType = "WSD"  # workstation: a rendering of images, not a digitised film
    capture.ImageType = ["DERIVED", "SECONDARY"]
    capture.BurnedInAnnotation = "NO"  # labels and measurements, nothing that identifies the patient
    capture.DerivationDescription = _DERIVATION_DESCRIPTION
    capture.ImageComments = f"{label}: {measured}"[:10240]
    item = Dataset()
    item.ReferencedSOPClassUID = image.source_image.sop_class_uid
    item.ReferencedSOPInstanceUID = image.source_image.sop_instance_uid
    if image.source_image.frame_number is not None:
        item.ReferencedFrameNumber = int(image.source_image.frame_number)
    capture.SourceImageSequence = [item]
    return capture


def _keyObjectSelection(report: ReadReport, captures: Sequence[Dataset], sources: Sequence[Dataset]) -> Dataset:
    lesion_lines = [f"{lesion.label}: " + ", ".join(f"{name} {value}" for name, value in summary(lesion.measurements))
                    for lesion in report.lesions]
    description = ("QuantReport key images of measurement report " + report.sop_instance_uid + ". "
                   + " | ".join(lesion_lines))[:1024]
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=DEVICE_OBSERVER_UID, name=DEVICE_OBSERVER_NAME, manufacturer_name=MANUFACTURER,
            model_name=DEVICE_OBSERVER_MODEL_NAME),
    )
    content = hd.ko.KeyObjectSelection(
        document_title=codes.DCM.OfInterest,
        referenced_objects=[*captures, *sources, report.header],
        observer_device_context=device,
        description=description,
    )
    document = hd.ko.KeyObjectSelectionDocument(
        evidence=[*captures, *sources, report.header],
        content=content,
        series_instance_uid=generate_uid(),
        series_number=KO_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
    )
    document.SpecificCharacterSet = UTF8
    document.SeriesDescription = KO_SERIES_DESCRIPTION
    return document
