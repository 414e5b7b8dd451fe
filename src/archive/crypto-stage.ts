import { Duplex } from 'node:stream';
import { Worker } from 'node:worker_threads';
import type { CryptoJob, FromWorker, ToWorker } from './crypto-worker.js';

/** Input chunks the worker may have taken without acknowledging them. */
const IN_FLIGHT = 4;

/**
 * A stream stage that runs an OpenPGP job on a worker thread; its errors carry openpgp's message,
 * for the caller to classify.
 */
export function cryptoStage(job: CryptoJob): Duplex {
  const worker = new Worker(new URL('./crypto-worker.js', import.meta.url), { workerData: job });
  const post = (message: ToWorker, transfer: ArrayBuffer[] = []) => worker.postMessage(message, transfer);
  let unacknowledged = 0;
  let done = false;
  let continueWriting: (() => void) | undefined;
  let finishing: ((error?: Error | null) => void) | undefined;

  const stage = new Duplex({
    readableHighWaterMark: 1024 * 1024,
    writableHighWaterMark: 1024 * 1024,
    write(chunk: Buffer, _encoding, callback) {
      if (done) return callback(); // bytes after the end of the message: ignored, as gpg does
      const copy = new Uint8Array(chunk); // the caller's buffer may be pooled: hand over a copy
      post({ type: 'data', chunk: copy }, [copy.buffer]);
      unacknowledged += 1;
      if (unacknowledged < IN_FLIGHT) callback();
      else continueWriting = () => callback();
    },
    final(callback) {
      post({ type: 'end' });
      finishing = callback;
    },
    read() {
      post({ type: 'resume' });
    },
    destroy(error, callback) {
      void worker.terminate();
      callback(error);
    },
  });

  worker.on('message', (message: FromWorker) => {
    switch (message.type) {
      case 'ack':
        unacknowledged -= 1;
        continueWriting?.();
        continueWriting = undefined;
        break;
      case 'data':
        if (!stage.push(Buffer.from(message.chunk.buffer, message.chunk.byteOffset, message.chunk.byteLength))) post({ type: 'pause' });
        break;
      case 'done':
        done = true;
        stage.push(null);
        continueWriting?.();
        finishing?.();
        void worker.terminate();
        break;
      case 'error':
        stage.destroy(new Error(message.message));
        break;
    }
  });
  worker.on('error', (error) => stage.destroy(error));
  return stage;
}
