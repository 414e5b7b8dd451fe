import { Duplex } from 'node:stream';
import { WorkerJob, transferable } from '../util/worker-channel.js';
import type { CryptoJob } from './crypto-stage.worker.js';

/**
 * A stream stage that runs an OpenPGP job on a worker thread. Decryption fails with `WRONG_KEY` or
 * `CORRUPT_ARCHIVE`, classified on the worker; anything else is a `BackupError` too. The stage
 * ends, errors and closes only once its thread has exited: a pipeline through it settles after.
 */
export function cryptoStage(job: CryptoJob): Duplex {
  const worker = WorkerJob.start<Uint8Array, Uint8Array, void, CryptoJob>(new URL('./crypto-stage.worker.js', import.meta.url), {
    data: job,
    name: 'The OpenPGP worker',
    failCode: job.mode === 'encrypt' ? 'DESTINATION_FAILED' : 'RESTORE_FAILED',
  });
  let finished = false;
  const done = worker.result.then(() => void (finished = true));
  done.catch(() => {}); // the failure reaches the stream through the pump below
  let wantMore: (() => void) | undefined;

  const stage = new Duplex({
    readableHighWaterMark: 1024 * 1024,
    writableHighWaterMark: 1024 * 1024,
    write(chunk: Buffer, _encoding, callback) {
      // A compressed block moves to the worker as it is; any other buffer may be pooled or still in
      // use, and goes as a copy.
      const copy = transferable(chunk);
      // Bytes after the end of the message are ignored, as gpg does: the job may end before them.
      if (finished) return callback();
      Promise.race([worker.send(copy, [copy.buffer]), done]).then(() => callback(), callback);
    },
    final(callback) {
      worker.end();
      done.then(() => callback(), callback);
    },
    read() {
      wantMore?.();
      wantMore = undefined;
    },
    destroy(error, callback) {
      void worker.stop().then(() => callback(error));
    },
  });

  void (async () => {
    try {
      for await (const chunk of worker) {
        if (!stage.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength))) await new Promise<void>((resolve) => (wantMore = resolve));
      }
      await done;
      await worker.exited;
      stage.push(null);
    } catch (error) {
      stage.destroy(error as Error);
    }
  })();
  return stage;
}
