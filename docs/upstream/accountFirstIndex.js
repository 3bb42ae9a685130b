'use strict';
/**
 * Azurite looks blobs up in LokiJS with findOne({ accountName, containerName, name, snapshot })
 * (LokiBlobMetadataStore.getBlobWithLeaseUpdated and others). LokiJS uses the binary index of a
 * query's FIRST key only and filters the rest linearly; every blob of the account has the same
 * accountName, so each lookup scans every blob of the account.
 *
 *   node docs/upstream/accountFirstIndex.js [sizes, e.g. 1000,5000,20000; default 1000,5000,10000]
 *
 * Part 1, LokiJS alone (Azurite's collection and indices): time of that lookup against the same
 * query with `name` first, for collections of growing size. Part 2, Azurite as published: median
 * time of a blob's GetProperties (HEAD) as the container grows.
 */
const { performance } = require('node:perf_hooks');
const path = require('node:path');
const Loki = require(require.resolve('lokijs', { paths: [path.dirname(require.resolve('azurite/package.json'))] }));
const { BlobServiceClient } = require('@azure/storage-blob');
const { startStockAzurite, DEV_CONNECTION } = require('./stockAzurite');

const sizes = (process.argv[2] ?? '1000,5000,10000').split(',').map(Number);

function lokiAlone(n) {
  const db = new Loki('repro.db', { persistenceMethod: 'memory' });
  const coll = db.addCollection('$BLOBS_COLLECTION$', {
    indices: ['accountName', 'containerName', 'name', 'snapshot'],
  });
  for (let i = 0; i < n; i++)
    coll.insert({ accountName: 'devstoreaccount1', containerName: 'c', name: `blob-${i}`, snapshot: '' });
  const time = (query) => {
    const t = performance.now();
    for (let k = 0; k < 200; k++) coll.findOne(query(`blob-${(k * 7919) % n}`));
    return (performance.now() - t) / 200;
  };
  const accountFirst = time((name) => ({ accountName: 'devstoreaccount1', containerName: 'c', name, snapshot: '' }));
  const nameFirst = time((name) => ({ name, accountName: 'devstoreaccount1', containerName: 'c', snapshot: '' }));
  return `${n} blobs: ${accountFirst.toFixed(3)} ms per findOne as Azurite asks, ${nameFirst.toFixed(3)} ms with name first (${(accountFirst / nameFirst).toFixed(0)}x)`;
}

async function azuriteHeads(azurite) {
  const container = BlobServiceClient.fromConnectionString(DEV_CONNECTION(azurite.port)).getContainerClient('repro');
  await container.create();
  let have = 0;
  for (const n of sizes) {
    for (; have < n; have += 50) {
      await Promise.all(
        Array.from({ length: Math.min(50, n - have) }, (_, j) =>
          container.getBlockBlobClient(`blob-${have + j}`).upload('x', 1),
        ),
      );
    }
    const times = [];
    for (let k = 0; k < 60; k++) {
      const t = performance.now();
      await container.getBlockBlobClient(`blob-${(k * 7919) % n}`).getProperties();
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    console.log(`  ${n} blobs in the account: GetProperties median ${times[30].toFixed(2)} ms`);
  }
}

async function main() {
  console.log(
    `azurite ${require('azurite/package.json').version}, lokijs ${require(require.resolve('lokijs/package.json', { paths: [path.dirname(require.resolve('azurite/package.json'))] })).version}, node ${process.version}`,
  );
  console.log('LokiJS alone:');
  for (const n of sizes) console.log(`  ${lokiAlone(n)}`);
  console.log('Azurite as published:');
  const azurite = await startStockAzurite();
  try {
    await azuriteHeads(azurite);
  } finally {
    azurite.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
