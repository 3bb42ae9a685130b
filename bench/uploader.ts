/**
 * The e2e bench's client: uploads the files it is sent to a container, from its own process, as
 * users' uploads arrive from outside the function app. Started by bench/e2e.ts with fork()
 * (advanced serialization, so Buffers cross as they are); reports when each upload was stored.
 *
 *   parent -> { connectionString, container, concurrency, contentType?, files: { name, data }[] }
 *   child  -> { uploaded: [name, epochMs][] } (in batches) ... then { done: true, cpuMs }
 */
import { BlobStore } from '../src/storage/blobStore';
import { mapLimit } from '../src/util/mapLimit';

export interface UploadJob {
  connectionString: string;
  container: string;
  concurrency: number;
  contentType?: string;
  files: { name: string; data: Buffer }[];
}

/** `cpuMs`: CPU time this process used for the uploads (user + system). */
export type UploaderMessage = { uploaded: [string, number][] } | { done: true; cpuMs: number } | { error: string };

function send(m: UploaderMessage): void {
  process.send?.(m);
}

process.once('message', (job: UploadJob) => {
  void (async () => {
    const store = BlobStore.fromConnection({ kind: 'connectionString', connectionString: job.connectionString });
    const batch: [string, number][] = [];
    const cpu0 = process.cpuUsage();
    const flush = setInterval(() => {
      if (batch.length > 0) send({ uploaded: batch.splice(0) });
    }, 100);
    try {
      await mapLimit(job.files, job.concurrency, async (f) => {
        const data = Buffer.from(f.data.buffer, f.data.byteOffset, f.data.byteLength);
        await store.put(
          job.container,
          f.name,
          data,
          job.contentType !== undefined ? { contentType: job.contentType } : {},
        );
        batch.push([f.name, Date.now()]);
      });
      clearInterval(flush);
      send({ uploaded: batch.splice(0) });
      const cpu = process.cpuUsage(cpu0);
      send({ done: true, cpuMs: (cpu.user + cpu.system) / 1000 });
    } catch (err) {
      clearInterval(flush);
      send({ error: String(err) });
    } finally {
      process.disconnect?.();
    }
  })();
});
