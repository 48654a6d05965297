// Retrieves instances over WADO-RS as a browser viewer (OHIF) does: fetch with the multipart Accept header,
// split the answer with dcmjs.utilities.message.multipartDecode, read each part with dcmjs.
//   node wado-retrieve.mjs DICOMWEB_ROOT OUT_DIR STUDY/SERIES/SOP...
// Writes OUT_DIR/<SOPInstanceUID>.dcm for each part and prints [{sop_instance_uid, modality, sop_class_uid, file}].
import fs from "node:fs";
import path from "node:path";
import dcmjs from "dcmjs";
import { printJson, readDataset } from "./dicom.mjs";

const [root, outDir, ...references] = process.argv.slice(2);
fs.mkdirSync(outDir, { recursive: true });
const found = [];
for (const reference of references) {
  const [study, series, sop] = reference.split("/");
  const url = `${root}/studies/${study}/series/${series}/instances/${sop}`;
  const response = await fetch(url, { headers: { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' } });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  const body = await response.arrayBuffer();
  for (const part of dcmjs.utilities.message.multipartDecode(body)) {
    const file = path.join(outDir, `${sop}.dcm`);
    fs.writeFileSync(file, Buffer.from(part));
    const dataset = readDataset(file, { untilTag: "7FE00010" });
    found.push({ sop_instance_uid: dataset.SOPInstanceUID, modality: dataset.Modality,
                 sop_class_uid: dataset.SOPClassUID, file });
  }
}
printJson(found);
