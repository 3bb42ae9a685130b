/**
 * Radiographs to DICOM: a PNG/JPEG (or any raster the imaging library decodes) written as a
 * single-frame Digital X-Ray DICOM Part 10 file, the way a modality hands one over: 16-bit words
 * (Bits Allocated 16, Bits Stored 8 to 16), MONOCHROME2 (dark = low) or MONOCHROME1 (inverted,
 * with Presentation LUT Shape INVERSE), a VOI window, and patient and study attributes.
 *
 * The grey values come from the same raster decoder that preprocessing uses, and the window maps
 * the stored values back onto them exactly (up to the quantisation to Bits Stored), so
 * preprocessing the DICOM file gives the pixels of preprocessing the source image.
 *
 * Written with dcmjs (explicit VR little endian). Used by the X-ray demo (DICOM uploads of real
 * radiographs) and by tests; the product itself only reads DICOM.
 */
import { randomBytes } from 'node:crypto';
import { data as dcmjsData } from 'dcmjs';
import { ImageRejection } from './errors';
import type { Gray } from './gray';
import { decodeRaster } from './raster';
import { sniff } from './sniff';

/** Patient and study attributes written into the file (values are what a PACS would hold). */
export interface DicomPatient {
  /** Patient's Name (PN, e.g. Family^Given). */
  name: string;
  patientId: string;
  /** Patient's Birth Date, YYYYMMDD. */
  birthDate: string;
  sex: 'F' | 'M' | 'O';
  accessionNumber: string;
  institutionName: string;
  referringPhysicianName: string;
  /** Study Date, YYYYMMDD. */
  studyDate: string;
}

export interface ToDicomOptions {
  photometric: 'MONOCHROME1' | 'MONOCHROME2';
  /** Bits Stored (Bits Allocated is 16), from 8 to 16. Default 12. */
  bitsStored?: number;
  patient: DicomPatient;
  /** Pixel budget of decoding the source image. Default 50 megapixels. */
  maxPixels?: number;
}

const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';
/** Digital X-Ray Image Storage - For Presentation. */
const DX_FOR_PRESENTATION = '1.2.840.10008.5.1.4.1.1.1.1';

/**
 * Stored-value range of the image under Bits Stored `bits`: grey 0 maps to `low`, grey 1 to
 * `low + span`. The range leaves room at both ends, as real detector data does, so the VOI window
 * is a proper part of the stored range rather than all of it.
 */
export function storedRange(bits: number): { low: number; span: number } {
  const max = 2 ** bits - 1;
  return { low: Math.round(max * 0.06), span: Math.round(max * 0.85) };
}

/** The file attributes that identify the patient or the study: what must never reach a record (name components of 6 characters or more, too). */
export function identifyingValues(p: DicomPatient): string[] {
  const parts = p.name.split('^').filter((s) => s.length >= 6);
  return [
    ...new Set([
      p.name,
      ...parts,
      p.patientId,
      p.birthDate,
      p.accessionNumber,
      p.institutionName,
      p.referringPhysicianName,
    ]),
  ];
}

const FAMILY = ['Lindqvist', 'Okonkwo', 'Marchetti', 'Haraldsen', 'Villanueva', 'Takahashi', 'Brennan', 'Kowalczyk'];
const GIVEN = ['Ada', 'Bruno', 'Chiara', 'Dmitri', 'Elif', 'Farah', 'Goran', 'Hana'];

/**
 * Made-up patient attributes for test and demo files: random and distinctive, so that finding one
 * of them anywhere but in the DICOM file itself means it leaked. `random` defaults to crypto bytes.
 */
export function madeUpPatient(random: () => number = () => randomBytes(4).readUInt32BE(0) / 2 ** 32): DicomPatient {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
  const hex = (n: number) =>
    Array.from({ length: n }, () => Math.floor(random() * 16).toString(16))
      .join('')
      .toUpperCase();
  const date = (fromYear: number, years: number) => {
    const y = fromYear + Math.floor(random() * years);
    const m = 1 + Math.floor(random() * 12);
    const d = 1 + Math.floor(random() * 28);
    return `${y}${String(m).padStart(2, '0')}${String(d).padStart(2, '0')}`;
  };
  return {
    name: `${pick(FAMILY)}${hex(4)}^${pick(GIVEN)}`,
    patientId: `PID-${hex(10)}`,
    birthDate: date(2012, 6),
    sex: pick(['F', 'M'] as const),
    accessionNumber: `ACC${hex(9)}`,
    institutionName: `Riverside Children's Hospital ${hex(4)}`,
    referringPhysicianName: `Dr${hex(5)}^Referring`,
    studyDate: date(2019, 5),
  };
}

/** Writes a grey image (values in [0, 1]) as a DICOM file with the given photometric interpretation and bit depth. */
export function grayToDicom(image: Gray, opts: ToDicomOptions): Buffer {
  const bits = opts.bitsStored ?? 12;
  if (!Number.isInteger(bits) || bits < 8 || bits > 16)
    throw new TypeError(`grayToDicom: bitsStored must be an integer from 8 to 16, got ${bits}`);
  const { width, height, data } = image;
  if (data.length !== width * height)
    throw new TypeError(`grayToDicom: ${width}x${height} image has ${data.length} values`);
  const { low, span } = storedRange(bits);
  const inverse = opts.photometric === 'MONOCHROME1';
  const words = new Uint16Array(width * height);
  for (let i = 0; i < words.length; i++) {
    const level = Math.round(Math.min(1, Math.max(0, data[i] ?? 0)) * span);
    words[i] = low + (inverse ? span - level : level);
  }
  // PS3.3 C.11.2.1.2 (LINEAR): with centre low + span/2 + 0.5 and width span + 1, stored value
  // low maps to 0 and low + span to 1, linearly in between.
  const windowCenter = low + span / 2 + 0.5;
  const windowWidth = span + 1;
  const p = opts.patient;
  const studyUid = dcmjsData.DicomMetaDictionary.uid();
  const dataset: dcmjsData.NaturalizedDataset = {
    _meta: { TransferSyntaxUID: { Value: [EXPLICIT_VR_LITTLE_ENDIAN] } },
    _vrMap: { PixelData: 'OW' },
    SpecificCharacterSet: 'ISO_IR 100',
    ImageType: ['ORIGINAL', 'PRIMARY'],
    SOPClassUID: DX_FOR_PRESENTATION,
    SOPInstanceUID: dcmjsData.DicomMetaDictionary.uid(),
    StudyInstanceUID: studyUid,
    SeriesInstanceUID: dcmjsData.DicomMetaDictionary.uid(),
    StudyDate: p.studyDate,
    StudyTime: '101500',
    AccessionNumber: p.accessionNumber,
    Modality: 'DX',
    PresentationIntentType: 'FOR PRESENTATION',
    Manufacturer: 'image-triage toDicom',
    InstitutionName: p.institutionName,
    ReferringPhysicianName: p.referringPhysicianName,
    PatientName: p.name,
    PatientID: p.patientId,
    PatientBirthDate: p.birthDate,
    PatientSex: p.sex,
    BodyPartExamined: 'CHEST',
    ViewPosition: 'AP',
    StudyID: '1',
    SeriesNumber: '1',
    InstanceNumber: '1',
    PatientOrientation: ['L', 'F'],
    BurnedInAnnotation: 'NO',
    SamplesPerPixel: 1,
    PhotometricInterpretation: opts.photometric,
    Rows: height,
    Columns: width,
    BitsAllocated: 16,
    BitsStored: bits,
    HighBit: bits - 1,
    PixelRepresentation: 0,
    RescaleIntercept: '0',
    RescaleSlope: '1',
    RescaleType: 'US',
    WindowCenter: String(windowCenter),
    WindowWidth: String(windowWidth),
    VOILUTFunction: 'LINEAR',
    PresentationLUTShape: inverse ? 'INVERSE' : 'IDENTITY',
    LossyImageCompression: '00',
    PixelData: [words.buffer],
  };
  return dcmjsData.datasetToBuffer(dataset);
}

/**
 * Converts a radiograph (PNG, JPEG, WebP, TIFF or GIF bytes) to DICOM: decoded to grey by the
 * imaging library's raster decoder (first frame, colour to luminance), then grayToDicom.
 * Throws ImageRejection for inputs the imaging library rejects.
 */
export async function radiographToDicom(bytes: Buffer, opts: ToDicomOptions): Promise<Buffer> {
  const s = sniff(bytes);
  if (s.kind !== 'decodable' || s.format === 'dicom')
    throw new ImageRejection(
      s.kind === 'unknown' ? 'not-an-image' : 'unsupported-format',
      'radiographToDicom takes PNG, JPEG, WebP, TIFF or GIF bytes',
    );
  const { image } = await decodeRaster(bytes, s.format, opts.maxPixels ?? 50_000_000);
  return grayToDicom(image, opts);
}
