/**
 * What a running backup or restore is doing.
 * @public
 */
export type ProgressPhase = 'snapshot' | 'archive' | 'commit' | 'read' | 'verify';

/**
 * A `progress` event of a backup or a restore.
 * @public
 */
export interface ProgressEvent {
  /** Which kind of operation emits it. */
  readonly operation: 'backup' | 'restore' | 'verify';
  /** What it is doing now. */
  readonly phase: ProgressPhase;
  /** The source being worked on, if any. */
  readonly source: string | undefined;
  /** Backup: bytes read from sources. Restore: archive bytes read from the destination. */
  readonly bytesDone: number;
  /** Estimated up front; may be passed by a source that grows while it is read. */
  readonly bytesTotal: number;
  /** Entries (files, folders, links, databases) done. */
  readonly itemsDone: number;
  /** Entries expected; 0 when unknown up front (restore). */
  readonly itemsTotal: number;
  /** 0 to 100. */
  readonly percent: number;
  /** Mean rate since the data started to flow. */
  readonly bytesPerSecond: number;
  /** Milliseconds still to go at that rate; undefined until it can be told. */
  readonly etaMs: number | undefined;
}

/** Never more than 20 events a second... */
const MIN_INTERVAL_MS = 50;
/** ...and at least one every 250 ms while work goes on, so a bar never looks stuck. */
const HEARTBEAT_MS = 250;

/** Counts work and emits throttled progress events; the only place progress is computed. */
export class ProgressReporter {
  #phase: ProgressPhase;
  #source: string | undefined;
  #bytesDone = 0;
  #bytesTotal = 0;
  #itemsDone = 0;
  #itemsTotal = 0;
  #flowStartedAt: number | undefined;
  #lastEmitAt = 0;
  #heartbeat: NodeJS.Timeout | undefined;

  constructor(
    private readonly operation: ProgressEvent['operation'],
    initialPhase: ProgressPhase,
    private readonly emit: (event: ProgressEvent) => void,
  ) {
    this.#phase = initialPhase;
    this.#heartbeat = setInterval(() => this.report(true), HEARTBEAT_MS);
    this.#heartbeat.unref();
  }

  setTotals(bytes: number, items: number): void {
    this.#bytesTotal = bytes;
    this.#itemsTotal = items;
  }

  /** A boundary (new phase or source): always reported. */
  enter(phase: ProgressPhase, source?: string): void {
    this.#phase = phase;
    this.#source = source;
    this.report(true);
  }

  addBytes(bytes: number): void {
    this.#flowStartedAt ??= Date.now();
    this.#bytesDone += bytes;
    this.report(false);
  }

  addItem(): void {
    this.#itemsDone += 1;
    this.report(false);
  }

  report(boundary: boolean): void {
    const now = Date.now();
    if (!boundary && now - this.#lastEmitAt < MIN_INTERVAL_MS) return;
    this.#lastEmitAt = now;
    const elapsedSeconds = this.#flowStartedAt === undefined ? 0 : (now - this.#flowStartedAt) / 1000;
    const bytesPerSecond = elapsedSeconds > 0 ? this.#bytesDone / elapsedSeconds : 0;
    const remaining = Math.max(0, this.#bytesTotal - this.#bytesDone);
    const fraction =
      this.#bytesTotal > 0 ? this.#bytesDone / this.#bytesTotal : this.#itemsTotal > 0 ? this.#itemsDone / this.#itemsTotal : 0;
    this.emit({
      operation: this.operation,
      phase: this.#phase,
      source: this.#source,
      bytesDone: this.#bytesDone,
      bytesTotal: this.#bytesTotal,
      itemsDone: this.#itemsDone,
      itemsTotal: this.#itemsTotal,
      percent: Math.min(100, Math.round(fraction * 1000) / 10),
      bytesPerSecond: Math.round(bytesPerSecond),
      etaMs: bytesPerSecond > 0 ? Math.round((remaining / bytesPerSecond) * 1000) : undefined,
    });
  }

  stop(): void {
    clearInterval(this.#heartbeat);
  }
}
