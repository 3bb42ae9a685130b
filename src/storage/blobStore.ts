/**
 * The one adapter over @azure/storage-blob. Everything that touches Blob Storage goes through
 * it, so errors are classified in one place: not-found, condition-failed (another writer got
 * there first) and transient (worth a retry).
 */
import { createHash } from 'node:crypto';
import { BlobServiceClient, ContainerClient, RestError, StoragePipelineOptions, BlobItem } from '@azure/storage-blob';
import type { StorageConnection } from '../config';
import { ALL_CONTAINERS } from './layout';

export interface BlobData {
  data: Buffer;
  etag: string;
  metadata: Record<string, string>;
  contentType: string | undefined;
  lastModified: Date | undefined;
}

export interface BlobEntry {
  name: string;
  etag: string;
  size: number;
  lastModified: Date;
  metadata: Record<string, string>;
}

export interface PutOptions {
  contentType?: string;
  metadata?: Record<string, string>;
  /** Write only if the blob does not exist yet. */
  ifNoneExists?: boolean;
  /** Write only if the blob still has this ETag. */
  ifMatch?: string;
}

export type PutResult = { written: true; etag: string } | { written: false; reason: 'exists' | 'changed' };

export const DEFAULT_RETRY = { maxTries: 4, retryDelayInMs: 200, maxRetryDelayInMs: 2000, tryTimeoutInMs: 60_000 };

export function errorStatus(err: unknown): number | undefined {
  if (err instanceof RestError) return err.statusCode;
  const s = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof s === 'number' ? s : undefined;
}

export function isNotFound(err: unknown): boolean {
  return errorStatus(err) === 404;
}

/** 409 (already exists, lease held) or 412 (ETag condition not met). */
export function isConditionFailed(err: unknown): boolean {
  const s = errorStatus(err);
  return s === 409 || s === 412;
}

/** True when the storage service could not be reached at all (refused, reset, timed out). */
export function isUnreachable(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  const msg = err instanceof Error ? err.message : String(err);
  return (
    (typeof code === 'string' &&
      /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|REQUEST_SEND_ERROR|ENOTFOUND|EAI_AGAIN/.test(code)) ||
    /ECONNREFUSED|ECONNRESET|socket hang up/.test(msg)
  );
}

/** ETags as the service sends them in headers (quoted); listings give them bare. */
export function quoteEtag(etag: string | undefined): string {
  if (etag === undefined || etag === '') return '';
  return etag.startsWith('"') ? etag : `"${etag}"`;
}

export function sha256(data: Buffer | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export class BlobStore {
  readonly service: BlobServiceClient;

  /**
   * Called after every successful write through this store, with what was written (the bytes
   * belong to `etag`). The embedded runtime uses it the way Azure uses Event Grid: a blob written
   * by a function triggers the next function at once, without waiting for a container scan.
   */
  onWrite: ((container: string, name: string, written: BlobData) => void) | undefined;

  constructor(service: BlobServiceClient) {
    this.service = service;
  }

  static fromConnection(
    conn: StorageConnection,
    retry: StoragePipelineOptions['retryOptions'] = DEFAULT_RETRY,
  ): BlobStore {
    const options: StoragePipelineOptions = { retryOptions: retry };
    if (conn.kind === 'connectionString') {
      return new BlobStore(BlobServiceClient.fromConnectionString(conn.connectionString, options));
    }
    // Loaded lazily: only Azure deployments use a managed identity.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const identity = require('@azure/identity') as typeof import('@azure/identity');
    const credential =
      conn.clientId !== undefined
        ? new identity.ManagedIdentityCredential({ clientId: conn.clientId })
        : new identity.DefaultAzureCredential();
    return new BlobStore(new BlobServiceClient(conn.blobServiceUri, credential, options));
  }

  /** Container clients hold no per-request state; building one costs about as much as a small request. */
  private readonly containers = new Map<string, ContainerClient>();

  container(name: string): ContainerClient {
    let c = this.containers.get(name);
    if (c === undefined) {
      c = this.service.getContainerClient(name);
      if (this.containers.size < 1000) this.containers.set(name, c);
    }
    return c;
  }

  /** Creates every container of the layout (and any extra ones) that does not exist yet. */
  async ensureContainers(extra: readonly string[] = []): Promise<void> {
    await Promise.all([...ALL_CONTAINERS, ...extra].map((c) => this.container(c).createIfNotExists()));
  }

  /** Downloads the blob as of one version: body and ETag always belong together. */
  async get(container: string, name: string): Promise<BlobData | undefined> {
    const blob = this.container(container).getBlobClient(name);
    try {
      const res = await blob.download(0);
      const body = await streamToBuffer(res.readableStreamBody);
      return {
        data: body,
        etag: quoteEtag(res.etag),
        metadata: res.metadata ?? {},
        contentType: res.contentType,
        lastModified: res.lastModified,
      };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async head(
    container: string,
    name: string,
  ): Promise<
    { etag: string; metadata: Record<string, string>; size: number; lastModified: Date | undefined } | undefined
  > {
    try {
      const p = await this.container(container).getBlobClient(name).getProperties();
      return {
        etag: quoteEtag(p.etag),
        metadata: p.metadata ?? {},
        size: p.contentLength ?? 0,
        lastModified: p.lastModified,
      };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async put(container: string, name: string, data: Buffer | string, opts: PutOptions = {}): Promise<PutResult> {
    const body = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    const blob = this.container(container).getBlockBlobClient(name);
    try {
      const res = await blob.uploadData(body, {
        blobHTTPHeaders: opts.contentType !== undefined ? { blobContentType: opts.contentType } : undefined,
        metadata: opts.metadata,
        conditions: opts.ifNoneExists
          ? { ifNoneMatch: '*' }
          : opts.ifMatch !== undefined
            ? { ifMatch: opts.ifMatch }
            : undefined,
      });
      const etag = quoteEtag(res.etag);
      this.onWrite?.(container, name, {
        data: body,
        etag,
        metadata: opts.metadata ?? {},
        contentType: opts.contentType,
        lastModified: res.lastModified,
      });
      return { written: true, etag };
    } catch (err) {
      if (isConditionFailed(err)) return { written: false, reason: opts.ifNoneExists ? 'exists' : 'changed' };
      throw err;
    }
  }

  async getJson<T>(container: string, name: string): Promise<{ value: T; etag: string } | undefined> {
    const b = await this.get(container, name);
    if (b === undefined) return undefined;
    return { value: JSON.parse(b.data.toString('utf8')) as T, etag: b.etag };
  }

  async putJson(
    container: string,
    name: string,
    value: unknown,
    opts: Omit<PutOptions, 'contentType'> = {},
  ): Promise<PutResult> {
    return this.put(container, name, JSON.stringify(value, null, 2) + '\n', {
      ...opts,
      contentType: 'application/json',
    });
  }

  /** Deletes the blob if it still has the given ETag; false when it was gone or changed. */
  async deleteIfMatch(container: string, name: string, etag: string): Promise<boolean> {
    try {
      await this.container(container)
        .getBlobClient(name)
        .delete({ conditions: { ifMatch: etag } });
      return true;
    } catch (err) {
      if (isNotFound(err) || isConditionFailed(err)) return false;
      throw err;
    }
  }

  /**
   * Takes a lease on the blob (created empty if it does not exist). Returns the lease id, or
   * undefined when another holder has it. `durationSec` is 15..60, or -1 for an infinite lease.
   */
  async acquireLease(container: string, name: string, durationSec = 60): Promise<string | undefined> {
    const blob = this.container(container).getBlockBlobClient(name);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const r = await blob.getBlobLeaseClient().acquireLease(durationSec);
        if (r.leaseId === undefined) throw new Error(`acquiring a lease on ${container}/${name} returned no lease id`);
        return r.leaseId;
      } catch (err) {
        if (isNotFound(err) && attempt === 0) {
          // Create the lock blob; a concurrent creator wins the same way (409/412 is fine).
          await this.put(container, name, '', { ifNoneExists: true });
          continue;
        }
        if (isConditionFailed(err)) return undefined; // 409 LeaseAlreadyPresent
        throw err;
      }
    }
    return undefined;
  }

  /** Renews a lease this holder has; false when it was lost (expired and taken, or broken). */
  async renewLease(container: string, name: string, leaseId: string): Promise<boolean> {
    try {
      await this.container(container).getBlockBlobClient(name).getBlobLeaseClient(leaseId).renewLease();
      return true;
    } catch (err) {
      if (isConditionFailed(err) || isNotFound(err)) return false;
      throw err;
    }
  }

  /** Releases a lease; a lease that was already lost is not an error. */
  async releaseLease(container: string, name: string, leaseId: string): Promise<void> {
    try {
      await this.container(container).getBlockBlobClient(name).getBlobLeaseClient(leaseId).releaseLease();
    } catch (err) {
      if (isConditionFailed(err) || isNotFound(err)) return;
      throw err;
    }
  }

  /**
   * The blobs of a container (under `prefix`), in name order. `pageSize` asks the service for at
   * most that many per request (default: the service's 5,000): smaller pages let other requests
   * through between them (Azurite answers one listing page at a time) at the cost of more round trips.
   */
  async *list(container: string, prefix?: string, withMetadata = false, pageSize?: number): AsyncGenerator<BlobEntry> {
    const it = this.container(container).listBlobsFlat({ prefix, includeMetadata: withMetadata });
    const items: AsyncIterable<BlobItem> = pageSize === undefined ? it : pagesOf(it.byPage({ maxPageSize: pageSize }));
    for await (const item of items) {
      yield {
        name: item.name,
        etag: quoteEtag(item.properties.etag),
        size: item.properties.contentLength ?? 0,
        lastModified: item.properties.lastModified,
        metadata: item.metadata ?? {},
      };
    }
  }

  async count(container: string, prefix?: string): Promise<number> {
    let n = 0;
    for await (const _ of this.list(container, prefix)) n++;
    return n;
  }
}

async function* pagesOf(pages: AsyncIterable<{ segment: { blobItems: BlobItem[] } }>): AsyncGenerator<BlobItem> {
  for await (const page of pages) yield* page.segment.blobItems;
}

async function streamToBuffer(stream: NodeJS.ReadableStream | undefined): Promise<Buffer> {
  if (stream === undefined) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks);
}
