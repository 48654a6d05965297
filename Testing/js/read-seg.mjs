// Reads a DICOM SEG the way OHIF Viewer v3 does and prints what it found as JSON.
//   node read-seg.mjs SEG_FILE SOURCE_SERIES_FOLDER
// "dcmjs": the Segment Sequence of the naturalized dataset (dcmjs.data).
// "ohif": the result of @cornerstonejs/adapters' Cornerstone3D SEG loader (what OHIF's
// cornerstone-dicom-seg extension calls), with the decoded labelmaps summarised per segment:
// voxel count, voxels per source image and the sums of their column and row indices.
import { adaptersSEG } from "@cornerstonejs/adapters";
import { metaData } from "@cornerstonejs/core";
import { arrayBuffer, code, items, printJson, readDataset, registerSeries } from "./dicom.mjs";

const [segFile, seriesFolder] = process.argv.slice(2);
const dataset = readDataset(segFile, { untilTag: "7FE00010" });
const segments = items(dataset.SegmentSequence).map(segment => ({
  number: Number(segment.SegmentNumber),
  label: segment.SegmentLabel,
  algorithm_type: segment.SegmentAlgorithmType,
  algorithm_name: segment.SegmentAlgorithmName ?? null,
  category: code(segment.SegmentedPropertyCategoryCodeSequence),
  type: code(segment.SegmentedPropertyTypeCodeSequence),
  anatomic_region: code(segment.AnatomicRegionSequence),
  cielab: segment.RecommendedDisplayCIELabValue === undefined ? null : items(segment.RecommendedDisplayCIELabValue).map(Number),
  tracking_id: segment.TrackingID ?? null,
  tracking_uid: segment.TrackingUID ?? null,
}));

const imageIds = registerSeries(seriesFolder);
const result = await adaptersSEG.Cornerstone3D.Segmentation.createFromDICOMSegBuffer(
  imageIds, arrayBuffer(segFile), { metadataProvider: metaData, tolerance: 1e-3 });
const voxels = {};
const layers = Array.isArray(result.labelMapImages[0]) ? result.labelMapImages : [result.labelMapImages];
for (const layer of layers) {
  layer.forEach((image, index) => {
    const sopInstanceUid = imageIds[index].slice(3);
    const pixels = image.voxelManager ? image.voxelManager.getScalarData() : image.getPixelData();
    for (let offset = 0; offset < pixels.length; offset++) {
      const number = pixels[offset];
      if (number === 0) continue;
      const entry = (voxels[number] ??= { count: 0, per_image: {}, sum_column: 0, sum_row: 0 });
      entry.count += 1;
      entry.per_image[sopInstanceUid] = (entry.per_image[sopInstanceUid] ?? 0) + 1;
      entry.sum_column += offset % image.columns;
      entry.sum_row += Math.floor(offset / image.columns);
    }
  });
}
printJson({
  sop_instance_uid: dataset.SOPInstanceUID,
  dcmjs: { segments },
  ohif: {
    segments: result.segMetadata.data.slice(1).filter(Boolean).map(data => ({
      number: Number(data.SegmentNumber), label: data.SegmentLabel,
    })),
    overlapping: Boolean(result.overlappingSegments),
    voxels,
  },
});
