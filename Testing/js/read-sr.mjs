// Reads a TID 1500 Measurement Report with dcmjs and prints what it found as JSON.
//   node read-sr.mjs SR_FILE [SOURCE_SERIES_FOLDER]
// "groups": every Measurement Group under "Imaging Measurements" as the naturalized dataset has it
// (tracking, finding codes, referenced segment, NUM values with units and modifiers, SCOORDs).
// "ohif": the annotations OHIF Viewer v3's SR display (extension cornerstone-dicom-sr) derives from the
// same content: groups merged by Tracking Unique Identifier, the first SCOORD/SCOORD3D as the
// graphic, the NUMs as labels, and 2D points mapped to patient coordinates with Cornerstone3D's
// imageToWorldCoords (needs SOURCE_SERIES_FOLDER).  This re-states OHIF's documented loader logic;
// OHIF's own module is not usable outside the browser application.
import { utilities } from "@cornerstonejs/core";
import { code, first, items, printJson, readDataset, registerSeries } from "./dicom.mjs";

const [srFile, seriesFolder] = process.argv.slice(2);
const dataset = readDataset(srFile);
if (seriesFolder) registerSeries(seriesFolder);

const conceptOf = item => first(item.ConceptNameCodeSequence);
const is = (item, value, scheme) => {
  const concept = conceptOf(item);
  return concept !== undefined && String(concept.CodeValue) === value && (!scheme || concept.CodingSchemeDesignator === scheme);
};
const child = (item, value, scheme) => items(item.ContentSequence).find(entry => is(entry, value, scheme));

function measurement(item) {
  const measured = first(item.MeasuredValueSequence);
  const modifier = (value, scheme) => {
    const entry = child(item, value, scheme);
    return entry ? code(entry.ConceptCodeSequence) : null;
  };
  return {
    name: code(item.ConceptNameCodeSequence),
    numeric_value: measured ? measured.NumericValue : null,
    floating_point_value: measured && measured.FloatingPointValue !== undefined ? Number(measured.FloatingPointValue) : null,
    unit: measured ? code(measured.MeasurementUnitsCodeSequence) : null,
    derivation: modifier("121401", "DCM"),
    method: modifier("370129005", "SCT"),
  };
}

function scoord(item) {
  const source = first(first(item.ContentSequence)?.ReferencedSOPSequence);
  return {
    value_type: item.ValueType,
    graphic_type: item.GraphicType,
    graphic_data: items(item.GraphicData).map(Number),
    referenced_sop_instance_uid: source ? source.ReferencedSOPInstanceUID : null,
    referenced_frame_number: source && source.ReferencedFrameNumber !== undefined ? Number(source.ReferencedFrameNumber) : null,
  };
}

const root = items(dataset.ContentSequence);
const imagingMeasurements = root.find(item => is(item, "126010", "DCM"));
const groupItems = items(imagingMeasurements?.ContentSequence).filter(item => is(item, "125007", "DCM"));
const groups = groupItems.map(group => {
  const content = items(group.ContentSequence);
  const codeOf = (value, scheme) => {
    const entry = child(group, value, scheme);
    return entry ? code(entry.ConceptCodeSequence) : null;
  };
  const segmentItem = child(group, "121191", "DCM");
  const segmentSource = segmentItem ? first(segmentItem.ReferencedSOPSequence) : undefined;
  return {
    template: first(group.ContentTemplateSequence)?.TemplateIdentifier ?? null,
    tracking_identifier: child(group, "112039", "DCM")?.TextValue ?? null,
    tracking_uid: child(group, "112040", "DCM")?.UID ?? null,
    finding: codeOf("121071", "DCM"),
    finding_category: codeOf("276214006", "SCT"),
    finding_site: codeOf("363698007", "SCT"),
    geometric_purpose: codeOf("130400", "DCM"),
    segment: segmentSource ? {
      sop_instance_uid: segmentSource.ReferencedSOPInstanceUID,
      number: Number(first(segmentSource.ReferencedSegmentNumber)),
    } : null,
    source_series_uid: child(group, "121232", "DCM")?.UID ?? null,
    measurements: content.filter(item => item.ValueType === "NUM").map(measurement),
    scoords: content.filter(item => item.ValueType === "SCOORD" || item.ValueType === "SCOORD3D").map(scoord),
  };
});

// OHIF: one annotation per Tracking Unique Identifier.
const merged = new Map();
groupItems.forEach(group => {
  const content = items(group.ContentSequence);
  const uid = child(group, "112040", "DCM")?.UID;
  if (!uid) return; // OHIF skips groups without one
  if (!merged.has(uid)) merged.set(uid, [...content]);
  else merged.get(uid).push(...content.filter(item => !is(item, "112040", "DCM")));
});
const ohif = [...merged.entries()].map(([uid, content]) => {
  const graphic = content.find(item => item.ValueType === "SCOORD" || item.ValueType === "SCOORD3D");
  const labels = content.filter(item => item.ValueType === "NUM" && item.MeasuredValueSequence).map(item => {
    const measured = first(item.MeasuredValueSequence);
    return {
      label: conceptOf(item).CodeMeaning,
      value: `${Number(measured.NumericValue).toFixed(2)} ${first(measured.MeasurementUnitsCodeSequence).CodeValue}`,
    };
  });
  const annotation = {
    tracking_uid: uid,
    tracking_identifier: content.find(item => is(item, "112039", "DCM"))?.TextValue ?? null,
    labels,
    graphic: graphic ? scoord(graphic) : null,
    world: null,
  };
  if (graphic && graphic.ValueType === "SCOORD" && seriesFolder) {
    const data = annotation.graphic.graphic_data;
    const imageId = `qr:${annotation.graphic.referenced_sop_instance_uid}`;
    annotation.world = [];
    for (let index = 0; index < data.length; index += 2) {
      annotation.world.push(utilities.imageToWorldCoords(imageId, [data[index], data[index + 1]]));
    }
  }
  return annotation;
});

// OHIF reads the referenced images from the TID 1600 Image Library and fails without one.
const library = root.find(item => is(item, "111028", "DCM"));
const libraryImages = library === undefined ? null : items(library.ContentSequence)
  .filter(item => is(item, "126200", "DCM"))
  .flatMap(group => items(group.ContentSequence))
  .flatMap(item => items(item.ReferencedSOPSequence))
  .map(reference => reference.ReferencedSOPInstanceUID);

printJson({ sop_instance_uid: dataset.SOPInstanceUID, groups, ohif, image_library: libraryImages });
