/** A stream that can be waited on: Node's streams and streamx's (tar-stream) both qualify. */
interface EventSource {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- both emitter typings, whatever their listener types
  on(event: any, listener: (...args: any[]) => void): unknown;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  off(event: any, listener: (...args: any[]) => void): unknown;
  /** Node: true from the call to destroy(). streamx: true once closed. */
  readonly destroyed?: boolean;
  /** streamx: true from the call to destroy(). */
  readonly destroying?: boolean;
  /** Node: the error the stream was destroyed with. */
  readonly errored?: Error | null;
}

/** What ends a wait besides the awaited stream's own error or close. */
export interface WaitOptions {
  /** The operation's signal: an abort ends the wait with its reason. */
  readonly signal?: AbortSignal | undefined;
  /** Streams the awaited one depends on (a tar entry on its pack): their error or close ends it too. */
  readonly linked?: readonly EventSource[];
}

/**
 * Resolves on `event` ('drain', 'finish'); rejects as soon as the stream or a linked one errors,
 * closes or is found torn down already, or the signal aborts. A destroyed stream never emits
 * 'drain', and one destroyed before the wait began emits nothing at all: `events.once` would wait
 * forever (seen: a tar entry destroyed with its pack while the next chunk was being read; a
 * multipart upload body destroyed by the SDK when the server went away).
 */
export function waitFor(stream: EventSource, event: 'drain' | 'finish', options: WaitOptions = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const onEvent = () => {
      stream.off(event, onEvent);
      unwatch();
      resolve();
    };
    stream.on(event, onEvent);
    const unwatch = onTeardown([stream, ...(options.linked ?? [])], options.signal, `before '${event}'`, (error) => {
      stream.off(event, onEvent);
      reject(error);
    });
  });
}

/**
 * Races works one after another with a signal's abort, with one listener for them all: a listener
 * added and removed for each of 12,000 entries cost the main thread 0.1 CPU s. `dispose` removes it.
 */
export class AbortRace {
  #reject: ((reason: unknown) => void) | undefined;
  readonly #onAbort = () => this.#reject?.(this.signal.reason);

  constructor(private readonly signal: AbortSignal) {
    signal.addEventListener('abort', this.#onAbort);
  }

  /** Settles as `work` does, or rejects with the signal's reason as soon as it aborts; one work at a time. */
  run<T>(work: Promise<T>): Promise<T> {
    if (this.signal.aborted) {
      work.catch(() => {}); // abandoned: its source is told to stop, not waited for
      return Promise.reject(this.signal.reason);
    }
    return new Promise<T>((resolve, reject) => {
      this.#reject = reject;
      work.then(resolve, reject);
    });
  }

  dispose(): void {
    this.#reject = undefined;
    this.signal.removeEventListener('abort', this.#onAbort);
  }
}

/** Calls `onStop` once when a stream errors, closes or is torn down already, or `signal` aborts; returns the unsubscriber. */
function onTeardown(streams: readonly EventSource[], signal: AbortSignal | undefined, when: string, onStop: (error: unknown) => void): () => void {
  let watching = true;
  const stop = (error: unknown) => {
    if (!watching) return;
    unwatch();
    onStop(error);
  };
  const removers = streams.map((stream) => {
    const onError = (error: Error) => stop(error);
    const onClose = () => stop(stream.errored ?? new Error(`The stream closed ${when}`));
    stream.on('error', onError);
    stream.on('close', onClose);
    return () => {
      stream.off('error', onError);
      stream.off('close', onClose);
    };
  });
  const onAbort = () => stop(signal?.reason);
  signal?.addEventListener('abort', onAbort);
  const unwatch = () => {
    watching = false;
    for (const remove of removers) remove();
    signal?.removeEventListener('abort', onAbort);
  };
  const tornDown = streams.find((stream) => stream.destroying === true || stream.destroyed === true);
  if (signal?.aborted) stop(signal.reason);
  else if (tornDown) stop(tornDown.errored ?? new Error(`The stream was destroyed ${when}`));
  return unwatch;
}

/** Resolves once `stream` has closed, at once if it has: a stage closes once what it owns (a thread) has ended. */
export function closed(stream: { readonly closed: boolean; once(event: 'close', listener: () => void): unknown }): Promise<void> {
  return stream.closed ? Promise.resolve() : new Promise((resolve) => stream.once('close', () => resolve()));
}

/** Reads a small body whole; `tooLarge` is thrown as soon as it passes `limit` bytes. */
export async function readLimited(body: AsyncIterable<Uint8Array>, limit: number, tooLarge: () => Error): Promise<Buffer> {
  const pieces: Uint8Array[] = [];
  let size = 0;
  for await (const piece of body) {
    size += piece.byteLength;
    if (size > limit) throw tooLarge();
    pieces.push(piece);
  }
  return Buffer.concat(pieces, size);
}
