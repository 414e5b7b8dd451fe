import { EventEmitter } from 'eventemitter3';
import { BackupError } from './errors.js';
import type { ProgressEvent } from './progress.js';

/**
 * Figures for one source of a backup or restore.
 * @public
 */
export interface SourceStats {
  /** The source's name. */
  readonly name: string;
  /** The source's kind, such as `sqlite` or `files`. */
  readonly kind: string;
  /** Bytes of file contents. */
  readonly bytes: number;
  /** Entries: files, folders and links. */
  readonly items: number;
}

/**
 * The events every operation emits.
 * @public
 */
export interface OperationEvents<Result> {
  /** A source's data starts to flow; a backup tells the source's estimated size. */
  'source-start': [info: { name: string; kind: string; estimatedBytes?: number }];
  /** Throttled progress: at least every 250 ms while work goes on, at most about 20 a second. */
  progress: [progress: ProgressEvent];
  /** A source is done. */
  'source-end': [stats: SourceStats];
  /** The operation succeeded; `done` resolves with the same result. */
  end: [result: Result];
  /** The operation failed; `done` rejects with the same error. */
  error: [error: BackupError];
}

/** What an engine gets from its operation: a signal and a way to emit. */
export interface OperationContext<Events extends OperationEvents<unknown>> {
  readonly signal: AbortSignal;
  emit<E extends keyof Events & string>(event: E, ...args: Events[E] & unknown[]): void;
}

/**
 * A running backup, restore or verification: an event emitter with a `done` promise and
 * `cancel()`, and awaitable itself (`await op` is `await op.done`).
 * @public
 */
export class Operation<Result, Events extends OperationEvents<Result>> extends EventEmitter<Events> implements PromiseLike<Result> {
  /**
   * Resolves with the result, or rejects with a {@link BackupError}, once every worker thread
   * backupkit started for the operation has exited, also after a failure or a cancel. A failure that is neither
   * awaited here nor listened to (`error`) is an unhandled rejection, as for any promise: Node.js
   * prints it and exits with code 1.
   */
  readonly done: Promise<Result>;
  readonly #controller = new AbortController();

  /** Use `Database.startBackup()` or `Database.restore()`. */
  constructor(run: (context: OperationContext<Events>) => Promise<Result>, signal?: AbortSignal) {
    super();
    const emitter = this as EventEmitter;
    const { signal: own } = this.#controller;
    const context: OperationContext<Events> = {
      signal: signal ? AbortSignal.any([own, signal]) : own,
      emit: (event, ...args) => void emitter.emit(event, ...args),
    };
    // Started on a later tick, so that listeners attached right after the call see every event.
    this.done = Promise.resolve()
      .then(() => run(context))
      .then(
        (result) => {
          emitter.emit('end', result);
          return result;
        },
        (error: unknown) => {
          const failure = error instanceof BackupError ? error : new BackupError('SOURCE_FAILED', String(error), { cause: error });
          // A caller who listens to 'error' and never awaits gets no unhandled rejection too. With
          // no listener, a failure nobody awaits is an unhandled rejection: Node prints it and
          // exits non-zero, rather than a backup failing without a trace.
          if (emitter.listenerCount('error') > 0) this.done.catch(() => {});
          emitter.emit('error', failure);
          throw failure;
        },
      );
  }

  /** Makes the operation awaitable: the same as `done.then(...)`. */
  then<A = Result, B = never>(
    onFulfilled?: ((result: Result) => A | PromiseLike<A>) | null,
    onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    return this.done.then(onFulfilled, onRejected);
  }

  /** Stops the operation; `done` rejects with `ABORTED` and nothing is committed. */
  cancel(reason = 'The operation was cancelled'): void {
    this.#controller.abort(new BackupError('ABORTED', reason));
  }
}
