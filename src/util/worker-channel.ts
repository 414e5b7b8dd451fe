/**
 * The one protocol between the main thread and every worker thread: a job started with its data,
 * a channel of messages each way with a credit window (a side may have at most `window` messages
 * unconsumed by the other, so the slower side bounds the memory), one result, and one way
 * for errors to travel back as a `BackupError` (code, message, hint and cause chain). Abort, a
 * thrown error, a crash, `process.exit` and running out of memory all end the job the same way:
 * it rejects with a typed error, and nothing waiting on it hangs.
 */
import * as threads from 'node:worker_threads';
import { Worker, parentPort, workerData, type MessagePort, type ResourceLimits } from 'node:worker_threads';
import { BackupError, abortError, type BackupErrorCode } from '../errors.js';

/** What crosses between the threads. */
type Frame =
  | { kind: 'message'; value: unknown }
  | { kind: 'credit' }
  | { kind: 'returned'; buffer: ArrayBuffer }
  | { kind: 'end' }
  | { kind: 'result'; value: unknown }
  | { kind: 'error'; error: SerializedError };

/** An error as data: its class does not survive the trip between threads. */
interface SerializedError {
  name: string;
  message: string;
  /** A `BackupError`'s code, or a system or library code (`ENOENT`, `SQLITE_NOTADB`). */
  code?: string;
  /** Set for a `BackupError` only. */
  hint?: string;
  path?: string;
  cause?: SerializedError;
}

interface Port {
  postMessage(value: Frame, transfer?: readonly ArrayBuffer[]): void;
}

/** How the worker learns its job. */
interface Start<Data> {
  data: Data;
  window: number;
}

/** Causes kept below an error: a chain is short, a cycle is not followed. */
const MAX_CAUSES = 8;
/** Messages a side may send before the other consumes any: a few keep both threads busy. */
const DEFAULT_WINDOW = 4;

/**
 * One end of the channel: messages out, with credits; messages in, the credit of each returned
 * when the next one is asked for (that is, once the previous one is handled).
 */
export class Channel<Out, In> {
  readonly #window: number;
  #credits: number;
  #creditWaiters: Array<() => void> = [];
  readonly #inbox: In[] = [];
  #owed = false;
  #ended = false;
  #failure: { error: unknown } | undefined;
  #wakeReceiver: (() => void) | undefined;
  /** Buffers this side sent that the other side gave back to be filled again. */
  readonly #returned: ArrayBuffer[] = [];

  constructor(
    private readonly port: Port,
    window: number,
  ) {
    this.#window = window;
    this.#credits = window;
  }

  /** Messages received and not consumed yet: never more than the window. */
  get buffered(): number {
    return this.#inbox.length;
  }

  /** Sends a message once the other side has room for it; `transfer` moves buffers instead of copying them. */
  async send(value: Out, transfer: readonly ArrayBuffer[] = []): Promise<void> {
    await this.#creditsUntil(() => this.#credits > 0, true);
    this.port.postMessage({ kind: 'message', value }, transfer);
  }

  /** Resolves when a message can be sent without waiting: a producer holds back its input meanwhile. */
  async writable(): Promise<void> {
    await this.#creditsUntil(() => this.#credits > 0);
  }

  /** Resolves once the other side has handled every message sent (asked for the next one). */
  async drained(): Promise<void> {
    await this.#creditsUntil(() => this.#credits === this.#window);
  }

  /** Waits for `enough` credits; `take` takes one in the same step, so that concurrent senders never overdraw. */
  async #creditsUntil(enough: () => boolean, take = false): Promise<void> {
    while (!enough() && !this.#failure) await new Promise<void>((resolve) => this.#creditWaiters.push(resolve));
    if (this.#failure) throw this.#failure.error;
    if (take) this.#credits -= 1;
  }

  /**
   * Gives a buffer the other side sent back to it, to fill again instead of allocating one: fresh
   * memory outside the heap for every message set off a full garbage collection every few of them.
   * It is transferred: every view of it on this side is empty from now on.
   */
  giveBack(buffer: ArrayBuffer): void {
    if (!this.#failure) this.port.postMessage({ kind: 'returned', buffer }, [buffer]);
  }

  /** A buffer given back by the other side ({@link giveBack}) of exactly `bytes`, if there is one. */
  takeReturned(bytes: number): ArrayBuffer | undefined {
    const at = this.#returned.findIndex((buffer) => buffer.byteLength === bytes);
    return at === -1 ? undefined : this.#returned.splice(at, 1)[0];
  }

  /** Tells the other side that no more messages come. */
  end(): void {
    if (!this.#failure) this.port.postMessage({ kind: 'end' });
  }

  /** The next message, or `undefined` once the other side ended; hands back the previous message's credit. */
  async receive(): Promise<In | undefined> {
    if (this.#owed && !this.#failure) this.port.postMessage({ kind: 'credit' });
    this.#owed = false;
    for (;;) {
      if (this.#failure) throw this.#failure.error;
      if (this.#inbox.length > 0) {
        this.#owed = true;
        return this.#inbox.shift();
      }
      if (this.#ended) return undefined;
      await new Promise<void>((resolve) => (this.#wakeReceiver = resolve));
    }
  }

  /** Every message until the other side ends, each handed back (its credit returned) as the next is asked for. */
  async *[Symbol.asyncIterator](): AsyncGenerator<In> {
    for (let message = await this.receive(); message !== undefined; message = await this.receive()) yield message;
  }

  /** Takes a frame from the other side; `end` and `result` both end what it sends. */
  protected deliver(frame: Frame): void {
    switch (frame.kind) {
      case 'message':
        this.#inbox.push(frame.value as In);
        break;
      case 'credit':
        this.#credits += 1;
        // All wake and check again: one may only be waiting for room (`writable`) or the last credit.
        for (const wake of this.#creditWaiters.splice(0)) wake();
        return;
      case 'returned':
        this.#returned.push(frame.buffer);
        return;
      default:
        this.#ended = true;
    }
    this.#wakeReceiver?.();
    this.#wakeReceiver = undefined;
  }

  /** Stops both directions: every send and receive, waiting or future, throws `error`. */
  protected fail(error: unknown): void {
    if (this.#failure) return;
    this.#failure = { error };
    for (const wake of this.#creditWaiters.splice(0)) wake();
    this.#wakeReceiver?.();
    this.#wakeReceiver = undefined;
  }
}

/**
 * Options of {@link WorkerJob.start}.
 */
export interface WorkerJobOptions<Data> {
  /** Handed to the worker's job function; structured-cloned (no functions). */
  data: Data;
  /** Names the worker in messages: "The SQLite worker". */
  name: string;
  /** The code of the error a worker that crashed or exited fails the job with. */
  failCode: BackupErrorCode;
  /** Aborting it stops the worker; the job then rejects with `ABORTED`. */
  signal?: AbortSignal;
  /** Messages a side may send before the other consumes any; default 4. */
  window?: number;
  /** Caps the worker's heap: past it the worker dies, and the job fails with `failCode`. */
  resourceLimits?: ResourceLimits;
}

/**
 * The main thread's handle on a job running on its own worker thread: a {@link Channel} to it, and
 * the job's result, which settles once and always (a failure also fails the channel).
 */
export class WorkerJob<Send, Receive, Result> extends Channel<Send, Receive> {
  readonly result: Promise<Result>;
  /**
   * Resolves once the thread has exited. `result` settles first on a stop: a native call (a
   * SQLite copy step) cannot be interrupted and runs on until it returns.
   */
  readonly exited: Promise<void>;
  #settle!: { resolve: (value: Result) => void; reject: (error: unknown) => void };
  #settled = false;
  readonly #worker: Worker;

  private constructor(url: URL, private readonly options: WorkerJobOptions<unknown>) {
    const window = options.window ?? DEFAULT_WINDOW;
    let worker: Worker | undefined;
    super({ postMessage: (frame, transfer) => worker?.postMessage(frame, transfer) }, window);
    this.result = new Promise<Result>((resolve, reject) => (this.#settle = { resolve, reject }));
    this.result.catch(() => {}); // a job may be stopped without anyone awaiting its result
    const start: Start<unknown> = { data: options.data, window };
    this.#worker = worker = new Worker(url, { workerData: start, ...(options.resourceLimits ? { resourceLimits: options.resourceLimits } : {}) });
    this.exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    const { name, failCode, signal } = options;
    worker.on('message', (frame: Frame) => this.#receive(frame));
    worker.on('error', (error) => this.#stop(new BackupError(failCode, `${name} failed: ${error.message}`, { cause: error })));
    worker.on('messageerror', (error) => this.#stop(new BackupError(failCode, `${name} sent a message that cannot be read`, { cause: error })));
    worker.on('exit', (code) => this.#stop(new BackupError(failCode, `${name} exited (code ${code}) before it finished`)));
    if (signal) {
      const onAbort = () => this.#stop(abortError(signal));
      if (signal.aborted) onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      void this.result.catch(() => {}).finally(() => signal.removeEventListener('abort', onAbort));
    }
  }

  /**
   * Starts `url`, a module that calls {@link serveWorkerJob}. Its job runs at once; the result
   * settles when it returns or throws, or when the worker dies or the signal aborts.
   */
  static start<Send, Receive, Result, Data>(url: URL, options: WorkerJobOptions<Data>): WorkerJob<Send, Receive, Result> {
    return new WorkerJob<Send, Receive, Result>(url, options);
  }

  /** Ends the job from this side: stops the worker; a job still running rejects with `ABORTED`. */
  async stop(): Promise<void> {
    this.#stop(new BackupError('ABORTED', `${this.options.name} was stopped`));
    await this.#worker.terminate();
  }

  #receive(frame: Frame): void {
    if (frame.kind === 'result') {
      this.deliver(frame);
      this.#finish(() => this.#settle.resolve(frame.value as Result));
    } else if (frame.kind === 'error') {
      const error = reviveError(frame.error);
      this.#stop(error instanceof BackupError ? error : new BackupError(this.options.failCode, `${this.options.name} failed: ${error.message}`, { cause: error }));
    } else this.deliver(frame);
  }

  /** Every way a job can end early ends here: the channel fails, the result rejects, the thread stops. */
  #stop(error: BackupError): void {
    this.#finish(() => {
      this.fail(error);
      this.#settle.reject(error);
    });
  }

  #finish(settle: () => void): void {
    if (this.#settled) return;
    this.#settled = true;
    settle();
    void this.#worker.terminate();
  }
}

/**
 * The worker threads one owner (a snapshot) starts: its `close()` stops those still running and
 * resolves once every one has exited, so that none outlives the owner. A thread in a native call
 * exits when the call returns; nothing is left running unawaited.
 */
export class ThreadGroup {
  readonly #running = new Set<{ stop(): Promise<void> }>();
  #closed = false;

  /** {@link WorkerJob.start}, for a job the group then owns; refused once the group is closed. */
  start<Send, Receive, Result, Data>(url: URL, options: WorkerJobOptions<Data>): WorkerJob<Send, Receive, Result> {
    if (this.#closed) throw new BackupError('ABORTED', `${options.name} was not started: its owner has closed`);
    const job = WorkerJob.start<Send, Receive, Result, Data>(url, options);
    this.#running.add(job);
    void job.exited.then(() => this.#running.delete(job));
    return job;
  }

  /** Stops every thread still running and waits for all to exit. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#running].map((job) => job.stop()));
  }
}

/**
 * Runs `job` as this worker thread's job: called once at the top level of a worker module. What
 * it returns becomes the job's result; what it throws reaches the main thread as the same
 * `BackupError` (any other error becomes one with the host's `failCode` and keeps its `code`).
 */
export function serveWorkerJob<Data, Send, Receive, Result>(job: (data: Data, channel: Channel<Send, Receive>) => Promise<Result>): void {
  const port = parentPort;
  if (!port) throw new Error('serveWorkerJob runs in a worker thread');
  const { data, window } = workerData as Start<Data>;
  const channel = new WorkerSide<Send, Receive>(port, window);
  job(data, channel).then(
    (value) => port.postMessage({ kind: 'result', value } satisfies Frame),
    (error: unknown) => port.postMessage({ kind: 'error', error: serializeError(error, MAX_CAUSES) } satisfies Frame),
  );
}

/**
 * A copy of `bytes` in an ArrayBuffer of its own, to transfer to a thread. `new Uint8Array(bytes)`
 * copies element by element into zeroed memory: measured 6-28 ms per 4 MiB here, against 3-4 ms.
 */
export function ownCopy(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const copy = Buffer.allocUnsafeSlow(bytes.byteLength); // never from the shared pool
  copy.set(bytes);
  return new Uint8Array(copy.buffer as ArrayBuffer, 0, copy.byteLength);
}

/** Views that are the only one in use of their ArrayBuffer, which may then move to a thread as it is. */
const soleViews = new WeakSet<Uint8Array>();

/** Marks `bytes`, which spans its whole ArrayBuffer, as the only view of it in use, such as a compressed block fresh from zlib. */
export function markSoleView(bytes: Uint8Array): void {
  soleViews.add(bytes);
}

/** `bytes` in an ArrayBuffer to transfer to a thread: its own if it is a sole view (no copy), else an {@link ownCopy}. */
export function transferable(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  // Node.js 21 and later can tell a buffer it refuses to transfer (its pool's); 20 cannot, and the mark suffices there.
  const refused = (threads as { isMarkedAsUntransferable?: (object: unknown) => boolean }).isMarkedAsUntransferable?.(bytes.buffer) ?? false;
  return soleViews.has(bytes) && bytes.buffer instanceof ArrayBuffer && !refused ? (bytes as Uint8Array<ArrayBuffer>) : ownCopy(bytes);
}

/** Buffers lent to the archive pipeline, by their ArrayBuffer: the bytes not copied out yet, and who takes the buffer back. */
const loans = new WeakMap<ArrayBufferLike, { left: number; giveBack: () => void }>();

/**
 * Lends `bytes`, the only view in use of their ArrayBuffer, to the stages that follow: once they
 * have copied every byte out ({@link copiedOut}), `giveBack` gets the buffer to fill again. Bytes
 * that no stage copies (cut, or passed on as they are) keep the buffer lent: it is then collected.
 */
export function lend(bytes: Uint8Array, giveBack: () => void): void {
  loans.set(bytes.buffer, { left: bytes.byteLength, giveBack });
}

/** Says that `length` bytes of `buffer` were copied out, and no view of them is kept: see {@link lend}. */
export function copiedOut(buffer: ArrayBufferLike, length: number): void {
  const loan = loans.get(buffer);
  if (loan === undefined) return;
  loan.left -= length;
  if (loan.left > 0) return;
  loans.delete(buffer);
  loan.giveBack();
}

/** The worker's end of the channel, on its parent port. */
class WorkerSide<Out, In> extends Channel<Out, In> {
  constructor(port: MessagePort, window: number) {
    super({ postMessage: (frame, transfer) => port.postMessage(frame, transfer) }, window);
    port.on('message', (frame: Frame) => this.deliver(frame));
  }
}

function serializeError(error: unknown, depth: number): SerializedError {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error) };
  const { code, path } = error as { code?: unknown; path?: unknown };
  return {
    name: error.name,
    message: error.message,
    ...(typeof code === 'string' ? { code } : {}),
    ...(error instanceof BackupError ? { hint: error.hint } : {}),
    ...(typeof path === 'string' ? { path } : {}),
    ...(error.cause !== undefined && depth > 0 ? { cause: serializeError(error.cause, depth - 1) } : {}),
  };
}

function reviveError(serialized: SerializedError): Error {
  const cause = serialized.cause && reviveError(serialized.cause);
  if (serialized.hint !== undefined) {
    return new BackupError(serialized.code as BackupErrorCode, serialized.message, { hint: serialized.hint, ...(cause ? { cause } : {}) });
  }
  const error = new Error(serialized.message, cause ? { cause } : undefined);
  error.name = serialized.name;
  return Object.assign(error, serialized.code === undefined ? {} : { code: serialized.code }, serialized.path === undefined ? {} : { path: serialized.path });
}
