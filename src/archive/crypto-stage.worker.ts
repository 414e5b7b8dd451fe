/**
 * Runs openpgp.js on a worker thread: it en- and decrypts with native calls but buffers and
 * copies in JavaScript, which stalled the host's event loop for 55-220 ms per run on the main
 * thread. Data flows both ways as messages, with backpressure: the main thread keeps at most a
 * few chunks unacknowledged, and pauses the output when its stream is full.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as openpgp from 'openpgp';

export type CryptoJob =
  | { mode: 'encrypt'; passwords: string[]; armoredKeys: string[]; config: Partial<openpgp.Config> }
  | { mode: 'decrypt'; armored: boolean; passwords: string[]; armoredPrivateKey: string | undefined };

export type ToWorker = { type: 'data'; chunk: Uint8Array } | { type: 'end' } | { type: 'pause' } | { type: 'resume' };
export type FromWorker = { type: 'data'; chunk: Uint8Array } | { type: 'ack' } | { type: 'done' } | { type: 'error'; message: string };

const port = parentPort as NonNullable<typeof parentPort>;
const job = workerData as CryptoJob;
const queue: Array<Uint8Array | null> = [];
let wakeInput: (() => void) | undefined;
let paused = false;
/** Everyone waiting for the main thread to want more output: the output loop and the input pull. */
let resumed: Array<() => void> = [];
const whileResumed = async () => {
  while (paused) await new Promise<void>((resolve) => resumed.push(resolve));
};

port.on('message', (message: ToWorker) => {
  if (message.type === 'data' || message.type === 'end') {
    queue.push(message.type === 'data' ? message.chunk : null);
    wakeInput?.();
  } else {
    paused = message.type === 'pause';
    if (!paused) {
      const waiting = resumed;
      resumed = [];
      for (const wake of waiting) wake();
    }
  }
});

const input = new ReadableStream<Uint8Array>({
  async pull(controller) {
    // Take more input only while the output is wanted: openpgp would otherwise run ahead and
    // queue whatever it decrypted, without bound.
    await whileResumed();
    while (queue.length === 0) await new Promise<void>((resolve) => (wakeInput = resolve));
    const chunk = queue.shift() as Uint8Array | null;
    if (chunk === null) return controller.close();
    controller.enqueue(chunk);
    port.postMessage({ type: 'ack' } satisfies FromWorker);
  },
});

try {
  const output = await transform();
  const reader = output.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    await whileResumed();
    const chunk = value.slice(); // a buffer of its own, to hand over without copying
    port.postMessage({ type: 'data', chunk } satisfies FromWorker, [chunk.buffer]);
  }
  port.postMessage({ type: 'done' } satisfies FromWorker);
} catch (error) {
  port.postMessage({ type: 'error', message: error instanceof Error ? error.message : String(error) } satisfies FromWorker);
}

async function transform(): Promise<ReadableStream<Uint8Array>> {
  if (job.mode === 'encrypt') {
    const message = await openpgp.createMessage({ binary: input });
    const encryptionKeys = await Promise.all(job.armoredKeys.map((armoredKey) => openpgp.readKey({ armoredKey })));
    return (await openpgp.encrypt({ message, passwords: job.passwords, encryptionKeys, format: 'binary', config: job.config })) as ReadableStream<Uint8Array>;
  }
  const message = job.armored
    ? ((await openpgp.readMessage({ armoredMessage: input.pipeThrough(new TextDecoderStream()) })) as unknown as openpgp.Message<ReadableStream<Uint8Array>>)
    : await openpgp.readMessage({ binaryMessage: input });
  const decryptionKeys = job.armoredPrivateKey ? [await openpgp.readPrivateKey({ armoredKey: job.armoredPrivateKey })] : undefined;
  const { data } = await openpgp.decrypt({
    message,
    ...(job.passwords.length > 0 ? { passwords: job.passwords } : {}),
    ...(decryptionKeys ? { decryptionKeys } : {}),
    format: 'binary',
    // Tampering is reported at the end of the message: safe, as restores commit nothing before.
    config: { allowUnauthenticatedStream: true },
  });
  return data as ReadableStream<Uint8Array>;
}
