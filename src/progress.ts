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
  /**
   * The source whose data flows now, always after its `source-start`; undefined between sources
   * (while snapshots are opened, during commit and verification).
   */
  readonly source: string | undefined;
  /** Backup: bytes read from sources. Restore: archive bytes read from the destination. */
  readonly bytesDone: number;
  /**
   * Backup: estimated up front, corrected to each source's actual size when it ends, never below
   * `bytesDone`; equal to it at the end. Restore: the archive's size.
   */
  readonly bytesTotal: number;
  /** Entries (files, folders, links, databases) done. */
  readonly itemsDone: number;
  /** Entries expected, never below `itemsDone`; 0 when unknown up front (restore). */
  readonly itemsTotal: number;
  /** Bytes of `source` done (a restore counts its entries' contents); 0 when `source` is undefined. */
  readonly sourceBytesDone: number;
  /**
   * The size of `source`: its estimate, raised to `sourceBytesDone` when passed, its actual size
   * once it ended; never below `sourceBytesDone`. 0 when `source` is undefined or its size is unknown.
   */
  readonly sourceBytesTotal: number;
  /** 0 to 100, never decreasing; exactly 100 only in the events after the operation succeeded. */
  readonly percent: number;
  /** Mean rate since the data started to flow. */
  readonly bytesPerSecond: number;
  /** Milliseconds still to go at that rate; `null` until data flows (no rate yet); 0 once done. */
  readonly etaMs: number | null;
}

/** Never more than 20 events a second... */
const MIN_INTERVAL_MS = 50;
/** ...and at least one every 250 ms while work goes on, so a bar never looks stuck. */
const HEARTBEAT_MS = 250;
/** What percent says until the operation succeeded: "all bytes read" is not "done". */
const UNFINISHED_MAX_PERCENT = 99.9;

/** Counts work and emits throttled progress events; the only place progress is computed. */
export class ProgressReporter {
  #phase: ProgressPhase;
  #source: string | undefined;
  #bytesDone = 0;
  #bytesTotal = 0;
  #itemsDone = 0;
  #itemsTotal = 0;
  #sourceBytesDone = 0;
  #sourceBytesTotal = 0;
  #sourceItemsTotal = 0;
  #percent = 0;
  #finished = false;
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

  /**
   * A boundary (new phase or source): always reported. A new source starts its own figures from
   * its estimate; emit its `source-start` first.
   */
  enter(phase: ProgressPhase, source?: string, estimate: { bytes: number; items: number } = { bytes: 0, items: 0 }): void {
    this.#phase = phase;
    if (source !== this.#source) {
      this.#source = source;
      this.#sourceBytesDone = 0;
      this.#sourceBytesTotal = estimate.bytes;
      this.#sourceItemsTotal = estimate.items;
    }
    this.report(true);
  }

  /** A source ended with its actual figures: the totals trade its estimate for them, so they converge. */
  endSource(actual: { bytes: number; items: number }): void {
    this.#bytesTotal += actual.bytes - this.#sourceBytesTotal;
    this.#itemsTotal += actual.items - this.#sourceItemsTotal;
    this.#sourceBytesTotal = actual.bytes;
    this.#sourceItemsTotal = actual.items;
  }

  /** Bytes of the whole operation (a restore counts archive bytes). */
  addBytes(bytes: number): void {
    this.#flowStartedAt ??= Date.now();
    this.#bytesDone += bytes;
    this.report(false);
  }

  /** Bytes of the current source. */
  addSourceBytes(bytes: number): void {
    this.#sourceBytesDone += bytes;
    this.report(false);
  }

  addItem(): void {
    this.#itemsDone += 1;
    this.report(false);
  }

  /** The operation succeeded: reports 100 % and an ETA of 0, now and in any later event. */
  complete(): void {
    this.#finished = true;
    this.#source = undefined;
    this.#sourceBytesDone = 0;
    this.#sourceBytesTotal = 0;
    this.report(true);
  }

  report(boundary: boolean): void {
    const now = Date.now();
    if (!boundary && now - this.#lastEmitAt < MIN_INTERVAL_MS) return;
    this.#lastEmitAt = now;
    const elapsedSeconds = this.#flowStartedAt === undefined ? 0 : (now - this.#flowStartedAt) / 1000;
    const bytesPerSecond = elapsedSeconds > 0 ? this.#bytesDone / elapsedSeconds : 0;
    // An estimate that fell short is raised to what was done, so no figure passes its total.
    const bytesTotal = Math.max(this.#bytesTotal, this.#bytesDone);
    const itemsTotal = Math.max(this.#itemsTotal, this.#itemsDone);
    const fraction = bytesTotal > 0 ? this.#bytesDone / bytesTotal : itemsTotal > 0 ? this.#itemsDone / itemsTotal : 0;
    const percent = this.#finished ? 100 : Math.min(UNFINISHED_MAX_PERCENT, Math.round(fraction * 1000) / 10);
    this.#percent = Math.max(this.#percent, percent); // a raised estimate must not move the bar back
    const remaining = bytesTotal - this.#bytesDone;
    this.emit({
      operation: this.operation,
      phase: this.#phase,
      source: this.#source,
      bytesDone: this.#bytesDone,
      bytesTotal,
      itemsDone: this.#itemsDone,
      itemsTotal,
      sourceBytesDone: this.#sourceBytesDone,
      sourceBytesTotal: Math.max(this.#sourceBytesTotal, this.#sourceBytesDone),
      percent: this.#percent,
      bytesPerSecond: Math.round(bytesPerSecond),
      etaMs: this.#finished ? 0 : bytesPerSecond > 0 ? Math.round((remaining / bytesPerSecond) * 1000) : null,
    });
  }

  stop(): void {
    clearInterval(this.#heartbeat);
  }
}
