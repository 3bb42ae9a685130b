'use strict';
/**
 * HEAD of a blob that does not exist, against Azurite as published: the 404 has neither
 * Content-Length nor Transfer-Encoding, so Node's HTTP client cannot tell where the response
 * ends and does not reuse the keep-alive connection. A HEAD of an existing blob, for contrast.
 *
 *   node docs/upstream/headContentLength.js
 */
const http = require('node:http');
const { BlobServiceClient } = require('@azure/storage-blob');
const { startStockAzurite, DEV_CONNECTION } = require('./stockAzurite');

/** Two HEADs in a row on one keep-alive agent: the first's status and length headers, and whether the second reused its socket. */
function twoHeads(port, blobPath) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const head = () =>
    new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path: blobPath, method: 'HEAD', agent }, (res) => {
        res.resume();
        res.on('end', () =>
          resolve({
            status: res.statusCode,
            contentLength: res.headers['content-length'],
            transferEncoding: res.headers['transfer-encoding'],
            reusedSocket: req.reusedSocket,
          }),
        );
      });
      req.on('error', reject);
      req.end();
    });
  return head().then(async (first) => {
    const second = await head();
    agent.destroy();
    return { first, secondReusedTheConnection: second.reusedSocket };
  });
}

async function main() {
  const azurite = await startStockAzurite();
  try {
    const container = BlobServiceClient.fromConnectionString(DEV_CONNECTION(azurite.port)).getContainerClient('repro');
    await container.create({ access: 'container' }); // anonymous reads, so the HEADs below need no signature
    await container.getBlockBlobClient('exists.txt').upload('hello', 5);
    const base = '/devstoreaccount1/repro';
    console.log(`azurite ${require('azurite/package.json').version}, node ${process.version}`);
    console.log('HEAD existing blob:', JSON.stringify(await twoHeads(azurite.port, `${base}/exists.txt`)));
    console.log('HEAD missing blob: ', JSON.stringify(await twoHeads(azurite.port, `${base}/missing.txt`)));
  } finally {
    azurite.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
