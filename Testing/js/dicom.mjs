// Shared helpers: read DICOM files with dcmjs and serve their headers to Cornerstone3D as OHIF's
// metadata provider would (the modules the SEG and SR adapters ask for).
import fs from "node:fs";
import path from "node:path";
import dcmjs from "dcmjs";
import { metaData } from "@cornerstonejs/core";

const { DicomMessage, DicomMetaDictionary } = dcmjs.data;

/** The file's bytes as an ArrayBuffer (what browsers hand to dcmjs). */
export function arrayBuffer(file) {
  const bytes = fs.readFileSync(file);
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
}

/** The naturalized dataset of a file (dcmjs.data.DicomMessage.readFile + naturalizeDataset). */
export function readDataset(file, options = {}) {
  const message = DicomMessage.readFile(arrayBuffer(file), options);
  return DicomMetaDictionary.naturalizeDataset(message.dict);
}

/** The first item of a naturalized sequence (dcmjs gives arrays; accessors make single items look like objects). */
export function first(value) {
  return Array.isArray(value) ? value[0] : value;
}

/** A naturalized sequence as an array. */
export function items(value) {
  if (value === undefined || value === null) return [];
  return Array.isArray(value) ? value : [value];
}

/** A code sequence item as {value, scheme, meaning}, or null. */
export function code(sequence) {
  const item = first(sequence);
  if (!item) return null;
  return { value: String(item.CodeValue), scheme: String(item.CodingSchemeDesignator), meaning: String(item.CodeMeaning ?? "") };
}

const numbers = value => items(value).map(Number);

/**
 * Registers the image headers of a series folder with Cornerstone3D's metadata registry, under the
 * image ids "qr:<SOPInstanceUID>", and returns those ids sorted along the slice normal (OHIF sorts a
 * display set the same way).
 */
export function registerSeries(folder) {
  const headers = new Map();
  for (const name of fs.readdirSync(folder).sort()) {
    const file = path.join(folder, name);
    if (!fs.statSync(file).isFile()) continue;
    let dataset;
    try {
      dataset = readDataset(file, { untilTag: "7FE00010" });
    } catch {
      continue; // not DICOM
    }
    if (dataset.ImagePositionPatient === undefined) continue;
    headers.set(`qr:${dataset.SOPInstanceUID}`, dataset);
  }
  metaData.addProvider((type, imageId) => {
    const dataset = headers.get(imageId);
    if (!dataset) return undefined;
    const orientation = numbers(dataset.ImageOrientationPatient);
    const spacing = numbers(dataset.PixelSpacing);
    switch (type) {
      case "instance":
        return dataset;
      case "imagePlaneModule":
        return {
          rows: dataset.Rows, columns: dataset.Columns, frameOfReferenceUID: dataset.FrameOfReferenceUID,
          rowCosines: orientation.slice(0, 3), columnCosines: orientation.slice(3, 6),
          imageOrientationPatient: orientation, imagePositionPatient: numbers(dataset.ImagePositionPatient),
          pixelSpacing: spacing, rowPixelSpacing: spacing[0], columnPixelSpacing: spacing[1],
          sliceThickness: Number(dataset.SliceThickness),
        };
      case "generalSeriesModule":
        return { seriesInstanceUID: dataset.SeriesInstanceUID, studyInstanceUID: dataset.StudyInstanceUID, modality: dataset.Modality };
      case "generalImageModule":
        return { sopInstanceUID: dataset.SOPInstanceUID, instanceNumber: dataset.InstanceNumber };
      case "sopCommonModule":
        return { sopInstanceUID: dataset.SOPInstanceUID, sopClassUID: dataset.SOPClassUID };
      case "imagePixelModule":
        return {
          rows: dataset.Rows, columns: dataset.Columns, samplesPerPixel: dataset.SamplesPerPixel ?? 1,
          bitsAllocated: dataset.BitsAllocated, bitsStored: dataset.BitsStored, highBit: dataset.HighBit,
          pixelRepresentation: dataset.PixelRepresentation, photometricInterpretation: dataset.PhotometricInterpretation,
        };
      default:
        return undefined;
    }
  }, 10000);
  const normalOf = dataset => {
    const [a, b, c, d, e, f] = numbers(dataset.ImageOrientationPatient);
    return [b * f - c * e, c * d - a * f, a * e - b * d];
  };
  const distance = dataset => {
    const normal = normalOf(dataset);
    return numbers(dataset.ImagePositionPatient).reduce((sum, x, index) => sum + x * normal[index], 0);
  };
  return [...headers.keys()].sort((a, b) => distance(headers.get(a)) - distance(headers.get(b)));
}

/** Prints an object as JSON on stdout. */
export function printJson(object) {
  process.stdout.write(JSON.stringify(object) + "\n");
}
