/**
 * What `triage train`, `triage evaluate` and the benchmarks share: backend selection, the training
 * defaults per data set, a loaded data set, the report files and the model card of a run.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BackendInfo, BackendName, initBackend } from './backend';
import { TrainTestSplit, count, manifestHash } from './data/dataset';
import type { LoadReport, ProfileName } from './data/folder';
import type { TrainResult } from './train';
import type { EvaluationReport } from './evaluate';
import { writePlots } from './plots';
import { TrainingDefaults, XRAY_DEFAULTS } from './defaults';
import { ModelCard, cardFieldsFromReport } from './modelStore';

/** What the ML backend selection reports (a subset of src/ml/backend.ts's BackendInfo). */
export type MlBackendInfo = Pick<BackendInfo, 'name' | 'tfjsVersion'> & { detail?: string };

/** Backend selection: src/ml/backend.ts (tensorflow if its binding loads, else wasm with the project kernels, else cpu). */
export async function initMlBackend(preferred?: BackendName, wasmThreads?: number): Promise<MlBackendInfo> {
  return initBackend(preferred, () => {}, wasmThreads === undefined ? {} : { wasmThreads });
}

export type { TrainingDefaults };
export { XRAY_DEFAULTS };

/** Training defaults per data set and architecture: what the accuracy bars were measured with. */
export function trainingDefaults(data: string, model: string, profile: ProfileName = 'mnist'): TrainingDefaults {
  if (profile === 'xray' || model === 'screen') return XRAY_DEFAULTS;
  if (data === 'mnist' && model === 'mlp')
    return { epochs: 60, augment: { shift: 2 }, learningRateDecay: 0.95, patience: 12 };
  if (data === 'mnist')
    return {
      epochs: 60,
      augment: { shift: 2, rotate: 10, scale: 0.1, elastic: 20 },
      learningRateDecay: 0.95,
      patience: 0,
    };
  if (data === 'fashion-mnist')
    return { epochs: 25, augment: { shift: 1, flip: true }, learningRateDecay: 0.9, patience: 6 };
  return { epochs: 20, augment: { shift: 2 }, learningRateDecay: 0.9, patience: 5 };
}

export interface LoadedData extends TrainTestSplit {
  kind: 'mnist' | 'fashion-mnist' | 'blob' | 'folder';
  preprocessing: { profile: string; version: string };
  /** A folder's load report (skipped files, cache use, the patient rule). */
  report?: LoadReport;
}

/** Writes metrics.json and the plots into dir. */
export async function writeReport(
  dir: string,
  report: EvaluationReport,
  extra: Record<string, unknown> = {},
  plots = true,
): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const metricsPath = join(dir, 'metrics.json');
  await writeFile(metricsPath, JSON.stringify({ ...extra, ...report }, null, 2) + '\n');
  const files = [metricsPath];
  if (plots) files.push(...Object.values(await writePlots(dir, report)));
  return files;
}

export function makeCard(a: {
  version: string;
  architecture: string;
  backend: MlBackendInfo;
  data: LoadedData;
  result: TrainResult;
  modelSeed: number;
  report: EvaluationReport;
}): ModelCard {
  const { result, data } = a;
  return {
    version: a.version,
    createdAt: new Date().toISOString(),
    architecture: a.architecture,
    backend: {
      name: a.backend.name,
      tfjsVersion: a.backend.tfjsVersion,
      ...(a.backend.detail ? { detail: a.backend.detail } : {}),
    },
    data: {
      source: data.train.source,
      manifestHash: manifestHash(data.train),
      trainImages: count(result.trainPart),
      validationImages: result.validation ? count(result.validation) : 0,
      testImages: count(data.test),
      testSource: data.test.source,
      ...(data.report?.grouping
        ? { grouping: { ...data.report.grouping, validationGroups: new Set(result.validation?.groups ?? []).size } }
        : {}),
      ...(data.report ? { skipped: data.report.skipped.length } : {}),
    },
    preprocessing: data.preprocessing,
    classNames: [...data.train.classNames],
    inputShape: data.train.shape,
    training: {
      ...result.options,
      modelSeed: a.modelSeed,
      epochsRun: result.history.length,
      bestEpoch: result.bestEpoch,
      imagesPerSecond: result.imagesPerSecond,
      history: result.history.map((h) => ({
        epoch: h.epoch,
        loss: h.loss,
        accuracy: h.accuracy,
        valLoss: h.valLoss,
        valAccuracy: h.valAccuracy,
        seconds: h.seconds,
      })),
    },
    ...cardFieldsFromReport(a.report),
  };
}
