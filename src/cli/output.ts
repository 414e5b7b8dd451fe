import type { Writable } from 'node:stream';
import type { BackupError } from '../errors.js';
import type { SourceStats } from '../operation.js';
import type { ProgressEvent } from '../progress.js';
import { redact, redactText } from '../util/redact.js';

/** A backup, restore or verification: each emits the events of `OperationEvents`, typed by its own map. */
type AnyOperation = object;

/**
 * Where a command's events and results go: progress bars and sentences for a person at a
 * terminal, or one JSON object per line for a program (docs/CLI.md lists them). Both are fed the
 * same calls.
 */
export interface Output {
  /** Follows an operation's events until it settles. */
  follow(operation: AnyOperation): void;
  /** A record for programs (`type` plus fields) and the lines a person reads instead. */
  emit(record: { type: string } & Record<string, unknown>, human: readonly string[]): void;
  /** The failure that ends the command. */
  fail(error: BackupError, verbose: boolean): void;
}

export function createOutput(stdout: Writable & { isTTY?: boolean; columns?: number }, stderr: Writable, json: boolean): Output {
  return json || !stdout.isTTY ? new JsonLines(stdout, stderr) : new Terminal(stdout, stderr);
}

class JsonLines implements Output {
  constructor(
    private readonly stdout: Writable,
    private readonly stderr: Writable,
  ) {}

  follow(operation: AnyOperation): void {
    const on = operation as unknown as { on(event: string, listener: (value: unknown) => void): void };
    for (const event of ['start', 'source-start', 'progress', 'source-end', 'warning']) {
      on.on(event, (value) => this.#line({ type: event, ...(value as object) }));
    }
  }

  emit(record: { type: string } & Record<string, unknown>): void {
    this.#line(record);
  }

  fail(error: BackupError, verbose: boolean): void {
    this.#line({ type: 'error', code: error.code, message: error.message, hint: error.hint });
    writeError(this.stderr, error, verbose);
  }

  #line(record: object): void {
    // Cron and CI keep these lines: whatever a record echoes, no secret goes into them.
    this.stdout.write(`${JSON.stringify(redact(record))}\n`);
  }
}

interface SourceLine {
  name: string;
  kind: string;
  estimatedBytes: number | undefined;
  bytes: number;
  startedAt: number;
  done: SourceStats | undefined;
}

const BAR_WIDTH = 24;
/** Redraws at most this often; progress events come at up to 20 a second. */
const REDRAW_MS = 100;

class Terminal implements Output {
  #sources: SourceLine[] = [];
  #current: SourceLine | undefined;
  #last: ProgressEvent | undefined;
  #drawn = 0;
  #drawnAt = 0;

  constructor(
    private readonly stdout: Writable & { columns?: number },
    private readonly stderr: Writable,
  ) {}

  follow(operation: AnyOperation): void {
    const on = operation as unknown as { on(event: string, listener: (value: never) => void): void };
    on.on('source-start', (info: { name: string; kind: string; estimatedBytes?: number }) => {
      this.#current = { ...info, estimatedBytes: info.estimatedBytes, bytes: 0, startedAt: Date.now(), done: undefined };
      this.#sources.push(this.#current);
      this.#draw(true);
    });
    on.on('progress', (event: ProgressEvent) => {
      // The source's own figures: the totals' bytes are the whole backup's, or the archive's in a restore.
      if (this.#current && event.source === this.#current.name) {
        this.#current.bytes = event.sourceBytesDone;
        this.#current.estimatedBytes = event.sourceBytesTotal;
      }
      this.#last = event;
      this.#draw(false);
    });
    on.on('source-end', (stats: SourceStats) => {
      const line = this.#sources.find((s) => s.name === stats.name);
      if (line) line.done = stats;
      this.#draw(true);
    });
    on.on('warning', (warning: { message: string }) => this.#above(`warning: ${warning.message}`));
  }

  emit(_record: unknown, human: readonly string[]): void {
    this.#draw(true);
    this.#drawn = 0; // the bars stay on screen above the result
    for (const line of human) this.stdout.write(`${line}\n`);
  }

  fail(error: BackupError, verbose: boolean): void {
    this.#draw(true);
    this.#drawn = 0;
    writeError(this.stderr, error, verbose);
  }

  /** Prints a line above the bars, which are drawn again below it. */
  #above(text: string): void {
    this.#erase();
    this.stdout.write(`${text}\n`);
    this.#draw(true);
  }

  #erase(): void {
    if (this.#drawn > 0) this.stdout.write(`\x1b[${this.#drawn}A\x1b[J`);
    this.#drawn = 0;
  }

  #draw(force: boolean): void {
    const now = Date.now();
    if (!force && now - this.#drawnAt < REDRAW_MS) return;
    this.#drawnAt = now;
    const lines = this.#sources.map((source) => this.#sourceLine(source, now));
    const total = this.#last;
    if (total) {
      const eta = total.etaMs === null || total.percent === 100 ? '' : `  ETA ${formatDuration(total.etaMs)}`;
      lines.push(`  ${'total'.padEnd(this.#nameWidth())} ${bar(total.percent / 100)} ${formatPercent(total.percent)}  ${total.phase}${eta}`);
    }
    // A pseudo-terminal nobody sized reports 0 columns.
    const width = Math.max(20, (this.stdout.columns || 100) - 1);
    this.#erase();
    this.stdout.write(lines.map((line) => `${line.slice(0, width)}\n`).join(''));
    this.#drawn = lines.length;
  }

  #nameWidth(): number {
    return Math.max(5, ...this.#sources.map((s) => s.name.length + s.kind.length + 1));
  }

  #sourceLine(source: SourceLine, now: number): string {
    const label = `${source.name} ${source.kind}`.padEnd(this.#nameWidth());
    if (source.done) return `  ${label} ${bar(1)} done  ${formatBytes(source.done.bytes)} in ${counted(source.done.items, 'item')}`;
    const seconds = Math.max((now - source.startedAt) / 1000, 0.001);
    const rate = source.bytes / seconds;
    const estimate = source.estimatedBytes;
    if (!estimate) return `  ${label} ${bar(undefined)}       ${formatBytes(source.bytes)}  ${formatBytes(rate)}/s`;
    const fraction = Math.min(source.bytes / estimate, 1);
    const eta = rate > 0 ? `  ETA ${formatDuration(((estimate - source.bytes) / rate) * 1000)}` : '';
    return `  ${label} ${bar(fraction)} ${formatPercent(fraction * 100)}  ${formatBytes(source.bytes)}/${formatBytes(estimate)}  ${formatBytes(rate)}/s${eta}`;
  }
}

function bar(fraction: number | undefined): string {
  if (fraction === undefined) return `[${'·'.repeat(BAR_WIDTH)}]`;
  const filled = Math.round(fraction * BAR_WIDTH);
  return `[${'█'.repeat(filled)}${'░'.repeat(BAR_WIDTH - filled)}]`;
}

function writeError(stderr: Writable, error: BackupError, verbose: boolean): void {
  stderr.write(`backupkit: ${error.code}: ${error.message}\n  hint: ${error.hint}\n`);
  if (!verbose) return;
  for (let cause: unknown = error; cause instanceof Error; cause = cause.cause) stderr.write(`${redactText(cause.stack ?? String(cause))}\n`);
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value.toFixed(0) : value.toFixed(1)} ${units[unit]}`;
}

export function formatDuration(ms: number): string {
  const seconds = Math.round(ms / 1000);
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  return minutes < 60 ? `${minutes}m${String(seconds % 60).padStart(2, '0')}s` : `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, '0')}m`;
}

function formatPercent(percent: number): string {
  return `${Math.floor(percent).toString().padStart(3)}%`;
}

/** `1 item`, `2 items`. */
export function counted(count: number, one: string, many = `${one}s`): string {
  return `${count} ${count === 1 ? one : many}`;
}

/** `a, b or c`: choices in a sentence. */
export function alternatives(choices: readonly string[]): string {
  return choices.length > 1 ? `${choices.slice(0, -1).join(', ')} or ${choices.at(-1)}` : choices.join('');
}
