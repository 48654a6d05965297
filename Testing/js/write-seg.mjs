// Writes a BINARY DICOM SEG the way OHIF's Cornerstone adapter exports one (its default: RLE Lossless,
// each 1-bit frame bit-packed and then RLE coded), from a labelmap given as raw bytes.
//   node write-seg.mjs SOURCE_SERIES_FOLDER LABELMAP.raw OUTPUT.dcm
// LABELMAP.raw holds one uint8 per voxel, slices in the order of the files sorted by name, each
// slice rows x columns; value N > 0 is segment N (one segment per value, no overlap).
import fs from "node:fs";
import path from "node:path";
import { adaptersSEG } from "@cornerstonejs/adapters";
import dcmjs from "dcmjs";
import { arrayBuffer, readDataset } from "./dicom.mjs";

const [seriesFolder, labelmapFile, outputFile] = process.argv.slice(2);
const files = fs.readdirSync(seriesFolder).sort().map(name => path.join(seriesFolder, name));
const images = files.map(file => ({ imageId: `qr:${file}`, data: { byteArray: { buffer: arrayBuffer(file) } } }));
const header = readDataset(files[0], { untilTag: "7FE00010" });
const pixels = header.Rows * header.Columns;
const labels = new Uint8Array(fs.readFileSync(labelmapFile));
const labelmaps2D = files.map((_, k) => {
  const pixelData = labels.slice(k * pixels, (k + 1) * pixels);
  return { pixelData, segmentsOnLabelmap: [0, ...new Set(pixelData.filter(value => value > 0))] };
});
const metadata = [undefined];
for (let number = 1; number <= Math.max(...labels); number++) {
  metadata[number] = {
    SegmentedPropertyCategoryCodeSequence: { CodeValue: "85756007", CodingSchemeDesignator: "SCT", CodeMeaning: "Tissue" },
    SegmentNumber: String(number),
    SegmentLabel: `segment ${number}`,
    SegmentAlgorithmType: "MANUAL",
    RecommendedDisplayCIELabValue: [43802, 26566, 37721],
    SegmentedPropertyTypeCodeSequence: { CodeValue: "108369006", CodingSchemeDesignator: "SCT", CodeMeaning: "Neoplasm" },
  };
}
const segmentation = adaptersSEG.Cornerstone.Segmentation.generateSegmentation(images, { labelmaps2D, metadata }, {});
fs.writeFileSync(outputFile, Buffer.from(dcmjs.data.datasetToDict(segmentation.dataset).write()));
