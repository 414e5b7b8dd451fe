/** Computes SHA-256 digests for `util/sha256.ts`, one input after another. */
import { createHash } from 'node:crypto';
import { serveWorkerJob } from './worker-channel.js';

serveWorkerJob<undefined, string, Uint8Array | 'digest', void>(async (_data, channel) => {
  let hash = createHash('sha256');
  for await (const message of channel) {
    if (message !== 'digest') hash.update(message);
    else {
      await channel.send(hash.digest('hex'));
      hash = createHash('sha256');
    }
  }
});
