/**
 * Fashion-MNIST (60,000 train / 10,000 test, 28x28 grayscale, 10 classes) in its original IDX files,
 * as Debian's `dataset-fashion-mnist` package installs them. Pixels are scaled to [0, 1]; garments
 * are light on a black background, the same polarity as MNIST.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readIdx } from './idx';
import { LabeledImages, TrainTestSplit, validate } from './dataset';

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';
export const FASHION_MNIST_CLASSES = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];

export interface IdxPairOptions {
  /** Folder of the IDX files. Default /usr/share/datasets/fashion-mnist. */
  dir?: string;
  /** Keep only the first N images of each part (quick runs). Default: all. */
  limitTrain?: number;
  limitTest?: number;
}

function findFile(dir: string, stem: string): string | undefined {
  return [`${stem}.gz`, stem].map((f) => join(dir, f)).find((p) => existsSync(p));
}

/** Reads an images/labels IDX pair (gzipped or plain) into LabeledImages. */
export async function loadIdxPair(
  imagesPath: string,
  labelsPath: string,
  classNames: string[],
  source: string,
  limit?: number,
): Promise<LabeledImages> {
  const [img, lab] = await Promise.all([readIdx(imagesPath), readIdx(labelsPath)]);
  if (img.shape.length !== 3 || lab.shape.length !== 1 || img.shape[0] !== lab.shape[0]) {
    throw new Error(
      `${imagesPath} (${img.shape.join('x')}) and ${labelsPath} (${lab.shape.join('x')}) do not form an image/label pair`,
    );
  }
  const total = img.shape[0] as number;
  const n = limit === undefined ? total : Math.min(limit, total);
  const h = img.shape[1] as number;
  const w = img.shape[2] as number;
  const images = new Float32Array(n * h * w);
  for (let i = 0; i < images.length; i++) images[i] = (img.data[i] as number) / 255;
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) labels[i] = lab.data[i] as number;
  return validate({ images, labels, shape: [h, w, 1], classNames, source });
}

/** Loads Fashion-MNIST; fails with a message naming the Debian package when the files are missing. */
export async function loadFashionMnist(opts: IdxPairOptions = {}): Promise<TrainTestSplit> {
  const dir = opts.dir ?? FASHION_MNIST_DIR;
  const files = {
    trainImages: findFile(dir, 'train-images-idx3-ubyte'),
    trainLabels: findFile(dir, 'train-labels-idx1-ubyte'),
    testImages: findFile(dir, 't10k-images-idx3-ubyte'),
    testLabels: findFile(dir, 't10k-labels-idx1-ubyte'),
  };
  const missing = Object.entries(files)
    .filter(([, p]) => p === undefined)
    .map(([k]) => k);
  if (missing.length > 0) {
    throw new Error(
      `Fashion-MNIST is not installed: ${dir} lacks the IDX files (${missing.join(', ')}). ` +
        `Install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or pass the folder that holds ` +
        `train-images-idx3-ubyte(.gz), train-labels-idx1-ubyte(.gz), t10k-images-idx3-ubyte(.gz), t10k-labels-idx1-ubyte(.gz).`,
    );
  }
  const [train, test] = await Promise.all([
    loadIdxPair(
      files.trainImages as string,
      files.trainLabels as string,
      FASHION_MNIST_CLASSES,
      'fashion-mnist:train',
      opts.limitTrain,
    ),
    loadIdxPair(
      files.testImages as string,
      files.testLabels as string,
      FASHION_MNIST_CLASSES,
      'fashion-mnist:test',
      opts.limitTest,
    ),
  ]);
  return { train, test };
}
