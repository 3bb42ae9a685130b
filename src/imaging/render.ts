/**
 * Renders images for people: an upload as an 8-bit grey PNG no larger than `maxSide` on its long
 * side, and a preprocessed .npy (what the model saw) as an 8-bit PNG of its own size. DICOM goes
 * through the same decoder as preprocessing, so it is shown with its own VOI window (Window
 * Center/Width, or the 0.5/99.5 percentiles without one) and MONOCHROME1 inverted: the browser
 * never receives the DICOM file or its raw pixel values. The same limits as preprocessing apply.
 */
import sharp from 'sharp';
import { decodeDicom } from './dicom';
import { ImageRejection } from './errors';
import { resample, type Gray } from './gray';
import { decodeNpy } from './npy';
import { fitInside } from './profiles';
import { decodeRaster } from './raster';
import { sniff } from './sniff';

export interface RenderLimits {
  maxInputBytes: number;
  maxPixels: number;
}

export interface Rendered {
  png: Buffer;
  width: number;
  height: number;
  /** Format of the source bytes (png, jpeg, dicom, ...). */
  format: string;
}

async function toPng(img: Gray): Promise<Buffer> {
  const bytes = Buffer.alloc(img.width * img.height);
  const d = img.data;
  for (let i = 0; i < bytes.length; i++) {
    const v = d[i] ?? 0;
    bytes[i] = v <= 0 ? 0 : v >= 1 ? 255 : Math.round(v * 255);
  }
  return sharp(bytes, { raw: { width: img.width, height: img.height, channels: 1 } })
    .png({ compressionLevel: 4 })
    .toBuffer();
}

/** Throws ImageRejection when the bytes are not an image that preprocessing would accept. */
export async function renderUpload(bytes: Buffer, maxSide: number, limits: RenderLimits): Promise<Rendered> {
  if (bytes.length === 0) throw new ImageRejection('empty', 'upload is empty (0 bytes)');
  if (bytes.length > limits.maxInputBytes)
    throw new ImageRejection('too-large', `upload is ${bytes.length} bytes, limit ${limits.maxInputBytes}`);
  const sniffed = sniff(bytes);
  if (sniffed.kind === 'unknown')
    throw new ImageRejection('not-an-image', 'content does not start with any known image signature');
  if (sniffed.kind === 'unsupported')
    throw new ImageRejection('unsupported-format', `${sniffed.format} files are not shown`);
  let img: Gray;
  if (sniffed.format === 'dicom') {
    const d = await decodeDicom(bytes, limits.maxPixels);
    img = d.image;
    const fit = fitInside(img.width, img.height, maxSide);
    if (fit !== undefined)
      img = {
        width: fit.width,
        height: fit.height,
        data: resample(img, { x: 0, y: 0, w: img.width, h: img.height }, fit.width, fit.height),
      };
  } else {
    img = (await decodeRaster(bytes, sniffed.format, limits.maxPixels, (w, h) => fitInside(w, h, maxSide))).image;
    const fit = fitInside(img.width, img.height, maxSide);
    if (fit !== undefined)
      img = {
        width: fit.width,
        height: fit.height,
        data: resample(img, { x: 0, y: 0, w: img.width, h: img.height }, fit.width, fit.height),
      };
  }
  return { png: await toPng(img), width: img.width, height: img.height, format: sniffed.format };
}

/** The model's input (values in [0, 1], shape [H, W, 1]) as an 8-bit PNG. */
export async function renderNpy(npy: Buffer): Promise<Rendered> {
  const { data, shape } = decodeNpy(npy);
  const [height, width] = shape;
  if (height === undefined || width === undefined || height * width !== data.length)
    throw new Error(`a .npy of shape [${shape.join(', ')}] is no single-channel image`);
  return { png: await toPng({ width, height, data }), width, height, format: 'npy' };
}
