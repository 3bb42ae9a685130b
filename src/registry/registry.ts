/**
 * The model registry: versions live under models/{version}/ (model.json, weights, card.json);
 * `models/current.json` names the promoted one. It changes only by ETag-conditional writes, so two
 * promotions racing cannot both win, and it keeps the history that rollback walks back through.
 */
import type { BlobStore } from '../storage/blobStore';
import { CONTAINERS, paths } from '../storage/layout';
import type { ModelCard } from '../ml/modelStore';

export interface CurrentModel {
  version: string;
  promotedAt: string;
  promotedBy: string;
  reason: string;
  /** Earlier promotions, newest first. */
  history: { version: string; promotedAt: string; promotedBy: string; reason: string }[];
}

export class RegistryError extends Error {
  constructor(
    readonly code: 'unknown-version' | 'conflict' | 'nothing-to-roll-back' | 'no-model' | 'incompatible',
    message: string,
  ) {
    super(message);
    this.name = 'RegistryError';
  }
}

const HISTORY_LIMIT = 50;

export async function readCurrent(store: BlobStore): Promise<{ value: CurrentModel; etag: string } | undefined> {
  return store.getJson<CurrentModel>(CONTAINERS.models, paths.currentModel());
}

/** The card of a version, or undefined when the version does not exist (or is incompletely saved). */
export async function findCard(store: BlobStore, version: string): Promise<ModelCard | undefined> {
  return (await store.getJson<ModelCard>(CONTAINERS.models, paths.modelCard(version)))?.value;
}

/** Every version with a card, newest first by creation time (or name). */
export async function listVersions(store: BlobStore): Promise<ModelCard[]> {
  const cards: ModelCard[] = [];
  for await (const e of store.list(CONTAINERS.models)) {
    const m = /^(.+)\/card\.json$/.exec(e.name);
    if (m?.[1] === undefined) continue;
    const card = await findCard(store, m[1]);
    if (card !== undefined) cards.push({ ...card, version: card.version ?? m[1] });
  }
  return cards.sort((a, b) => (b.createdAt ?? b.version).localeCompare(a.createdAt ?? a.version));
}

/** What an instance feeds its model: the preprocessing profile of its uploads and the xray profile's size. */
export interface InstanceImaging {
  profile: string;
  xraySize: number;
}

/** Why a model cannot score this instance's images (its card's profile or input shape differs), or undefined when it can. */
export function incompatibility(
  card: Pick<ModelCard, 'version' | 'preprocessing' | 'inputShape'>,
  instance: InstanceImaging,
): string | undefined {
  const want = card.preprocessing.profile;
  if (want !== instance.profile) {
    return `model ${card.version} was trained on images preprocessed with the ${want} profile, but this instance preprocesses uploads with the ${instance.profile} profile (TRIAGE_PROFILE)`;
  }
  const side = instance.profile === 'xray' ? instance.xraySize : 28;
  const [h, w, c] = card.inputShape;
  if (h !== side || w !== side || c !== 1) {
    const setting = instance.profile === 'xray' ? ` (TRIAGE_XRAY_SIZE=${instance.xraySize})` : '';
    return `model ${card.version} takes ${h}x${w}x${c} inputs, but this instance's ${instance.profile} profile makes ${side}x${side}x1 images${setting}`;
  }
  return undefined;
}

export interface PromoteOptions {
  by: string;
  reason: string;
  /** Refuse a model that cannot score this instance's images (RegistryError 'incompatible'). */
  instance?: InstanceImaging;
  /** Promote only if current.json still has this ETag ('' = only if nothing is promoted yet). */
  ifEtag?: string;
  now?: () => Date;
}

/** Makes `version` the promoted model. Throws RegistryError('conflict') if another promotion won the race. */
export async function promote(store: BlobStore, version: string, opts: PromoteOptions): Promise<CurrentModel> {
  const card = await findCard(store, version);
  if (card === undefined)
    throw new RegistryError(
      'unknown-version',
      `There is no model version ${JSON.stringify(version)} (no ${CONTAINERS.models}/${paths.modelCard(version)}).`,
    );
  refuseIncompatible({ ...card, version }, opts.instance);
  const now = (opts.now ?? (() => new Date()))().toISOString();
  const existing = await readCurrent(store);
  if (opts.ifEtag !== undefined && (existing?.etag ?? '') !== opts.ifEtag) {
    throw new RegistryError(
      'conflict',
      `models/current.json changed since it was read; promotion of ${version} not applied.`,
    );
  }
  const history =
    existing === undefined ? [] : [stripHistory(existing.value), ...existing.value.history].slice(0, HISTORY_LIMIT);
  const next: CurrentModel = { version, promotedAt: now, promotedBy: opts.by, reason: opts.reason, history };
  const res = await store.putJson(
    CONTAINERS.models,
    paths.currentModel(),
    next,
    existing === undefined ? { ifNoneExists: true } : { ifMatch: existing.etag },
  );
  if (!res.written)
    throw new RegistryError(
      'conflict',
      `Another promotion changed models/current.json at the same time; ${version} was not promoted.`,
    );
  return next;
}

/** Promotes the previously promoted version again. */
export async function rollback(store: BlobStore, opts: Omit<PromoteOptions, 'ifEtag'>): Promise<CurrentModel> {
  const existing = await readCurrent(store);
  if (existing === undefined)
    throw new RegistryError('no-model', 'No model is promoted, so there is nothing to roll back.');
  const [previous, ...older] = existing.value.history;
  if (previous === undefined)
    throw new RegistryError(
      'nothing-to-roll-back',
      `Only ${existing.value.version} was ever promoted; there is no earlier model.`,
    );
  if (opts.instance !== undefined) {
    const card = await findCard(store, previous.version);
    if (card !== undefined) refuseIncompatible({ ...card, version: previous.version }, opts.instance);
  }
  const now = (opts.now ?? (() => new Date()))().toISOString();
  const next: CurrentModel = {
    version: previous.version,
    promotedAt: now,
    promotedBy: opts.by,
    reason: opts.reason,
    // The rolled-back version leaves the history, so a second rollback goes one further back.
    history: older,
  };
  const res = await store.putJson(CONTAINERS.models, paths.currentModel(), next, { ifMatch: existing.etag });
  if (!res.written)
    throw new RegistryError(
      'conflict',
      'Another promotion changed models/current.json at the same time; rollback not applied.',
    );
  return next;
}

function refuseIncompatible(card: ModelCard, instance: InstanceImaging | undefined): void {
  const why = instance === undefined ? undefined : incompatibility(card, instance);
  if (why !== undefined)
    throw new RegistryError(
      'incompatible',
      `Not promoted: ${why}. Train a model for this profile and size, or change the instance's settings.`,
    );
}

function stripHistory(c: CurrentModel): CurrentModel['history'][number] {
  return { version: c.version, promotedAt: c.promotedAt, promotedBy: c.promotedBy, reason: c.reason };
}
