import { createReadStream } from 'node:fs';
import { resolve } from 'node:path';
import type { Writable } from 'node:stream';
import type { Registry } from 'prom-client';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { inspectArchive } from '../archive/inspect.js';
import type { DecryptOptions, EncryptOptions } from '../archive/encryption.js';
import type { SignOptions, VerifySignatureOptions } from '../archive/signature.js';
import type { ManifestEntry } from '../archive/format.js';
import { listBackups, type BackupProblem } from '../listing.js';
import { Database } from '../database.js';
import { BackupError } from '../errors.js';
import { prune, type RetentionPolicy } from '../retention.js';
import { sourceKind, type RestoreTarget } from '../kinds.js';
import { isOverdue } from '../schedule/catch-up.js';
import { loadPromClient } from '../schedule/metrics.js';
import type { ScheduleOptions, ScheduleRun, ScheduleRunType } from '../schedule/index.js';
import { checkTimeZone, parseTiming } from '../schedule/timing.js';
import { verifyBackup, type VerifyLevel } from '../restore/verify.js';
import type { Destination, SourceKindCliOptions } from '../types.js';
import { BACKUPKIT_VERSION } from '../version.js';
import { destinationFromSpec, loadConfig, readText, type CliConfig } from './config.js';
import { CLI_KINDS, helpText } from './help.js';
import { forCommandLine } from './hints.js';
import { serveMetrics, type MetricsServer } from './metrics-server.js';
import { alternatives, counted, createOutput, formatBytes, formatDuration, type Output } from './output.js';

/** What a command's exit code says; docs/CLI.md lists them. */
export const EXIT = { ok: 0, failed: 1, usage: 2, damaged: 3, leaseHeld: 4, interrupted: 130 } as const;

export interface CliIo {
  readonly stdout: Writable & { isTTY?: boolean; columns?: number };
  readonly stderr: Writable;
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
  /** Aborted on SIGINT or SIGTERM: the running operation is cancelled and cleans up. */
  readonly signal: AbortSignal;
  /** Aborted at a second SIGINT or SIGTERM: `run`, which the first one stops, cancels its running backup. */
  readonly cancel?: AbortSignal;
  /** Aborted when the command must stop waiting for that clean-up: it then fails at once with the reason. */
  readonly stopWaiting?: AbortSignal;
}

const COMMON = {
  config: { type: 'string' },
  json: { type: 'boolean' },
  verbose: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];
/** `--<kind>` of each kind, and the kind's own flags (`--jobs`). */
const SOURCE_FLAGS = Object.fromEntries(
  CLI_KINDS.flatMap(({ kind, cli }) => [[kind, { type: 'string', multiple: true }], ...Object.keys(cli.flags ?? {}).map((flag) => [flag, { type: 'string' }])]),
) as Record<string, { type: 'string'; multiple?: true }>;
/** `--scratch-<kind>` of each kind whose throwaway targets go on a server. */
const SCRATCH_FLAGS = Object.fromEntries(CLI_KINDS.filter(({ cli }) => cli.scratchServer).map(({ kind }) => [`scratch-${kind}`, { type: 'string' }])) as Record<string, { type: 'string' }>;
const DECRYPT_FLAGS = { 'passphrase-file': { type: 'string' }, 'private-key-file': { type: 'string' } } as const;
const FROM_FLAGS = { from: { type: 'string' }, backup: { type: 'string' }, 'as-of': { type: 'string' }, 'verify-key-file': { type: 'string', multiple: true } } as const;
const RETENTION_FLAGS = {
  'keep-last': { type: 'string' },
  'keep-daily': { type: 'string' },
  'keep-weekly': { type: 'string' },
  'keep-monthly': { type: 'string' },
  'max-age': { type: 'string' },
} as const;

/** Every command and the flags it takes (its help, in help.ts, lists every one). */
export const COMMANDS = {
  backup: { ...COMMON, ...SOURCE_FLAGS, to: { type: 'string', multiple: true }, compression: { type: 'string' }, 'compression-level': { type: 'string' }, encrypt: { type: 'boolean' }, recipient: { type: 'string', multiple: true }, 'passphrase-file': { type: 'string' }, 'sign-key-file': { type: 'string' }, incremental: { type: 'boolean' }, lease: { type: 'boolean' }, 'lease-ttl': { type: 'string' } },
  restore: { ...COMMON, ...SOURCE_FLAGS, ...FROM_FLAGS, ...DECRYPT_FLAGS },
  list: { ...COMMON, from: { type: 'string' } },
  verify: { ...COMMON, ...FROM_FLAGS, ...DECRYPT_FLAGS, level: { type: 'string' }, 'scratch-dir': { type: 'string' }, ...SCRATCH_FLAGS },
  inspect: { ...COMMON, ...DECRYPT_FLAGS, entries: { type: 'boolean' } },
  prune: { ...COMMON, from: { type: 'string' }, ...RETENTION_FLAGS, 'dry-run': { type: 'boolean' } },
  run: { ...COMMON, 'metrics-port': { type: 'string' } },
  status: { ...COMMON },
} as const satisfies Record<string, ParseArgsConfig['options']>;
type Command = keyof typeof COMMANDS;

/** Runs one command line; resolves with the exit code, never throws. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === 'help' && rest.length === 1 && Object.hasOwn(COMMANDS, rest[0]!)) {
    io.stdout.write(helpText(rest[0] as Command));
    return EXIT.ok;
  }
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.stdout.write(helpText());
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  if (name === '--version') {
    io.stdout.write(`${BACKUPKIT_VERSION}\n`);
    return EXIT.ok;
  }
  const wantsJson = rest.includes('--json');
  const verbose = rest.includes('--verbose');
  const output = createOutput(io.stdout, io.stderr, wantsJson);
  const command = Object.hasOwn(COMMANDS, name) ? (name as Command) : undefined;
  try {
    if (command === undefined) throw usage(`Unknown command "${name}"`);
    // Asked for before parsing, so that the help shows even beside a mistyped flag.
    if (rest.includes('--help') || rest.includes('-h')) {
      io.stdout.write(helpText(command));
      return EXIT.ok;
    }
    const { values, positionals } = parseFlags(command, rest);
    const config = await loadConfig(values['config'] as string | undefined, io.cwd);
    await Promise.race([COMMAND_RUNNERS[command]({ values, positionals, config, io, output }), rejectOnAbort(io.stopWaiting)]);
    return EXIT.ok;
  } catch (error) {
    const failure = error instanceof BackupError ? error : new BackupError('SOURCE_FAILED', String(error), { cause: error });
    output.fail(forCommandLine(failure, command), verbose);
    return exitCodeOf(failure, io.signal);
  }
}

/** Never settles, unless `signal` aborts: then rejects with its reason. */
function rejectOnAbort(signal: AbortSignal | undefined): Promise<never> {
  return new Promise((_, reject) => {
    if (signal?.aborted) reject(signal.reason);
    signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

function exitCodeOf(error: BackupError, signal: AbortSignal): number {
  if (error.code === 'ABORTED' && signal.aborted) return EXIT.interrupted;
  if (error.code === 'INVALID_OPTIONS') return EXIT.usage;
  // Its own code, so that a cron job or a fleet's script tells "another instance is on it" from a failure.
  if (error.code === 'LEASE_HELD') return EXIT.leaseHeld;
  if (error.code === 'CORRUPT_ARCHIVE' || error.code === 'UNSAFE_ARCHIVE' || error.code === 'SIGNATURE_INVALID' || error.code === 'VERIFY_FAILED') return EXIT.damaged;
  return EXIT.failed;
}

type Values = Record<string, string | boolean | string[] | undefined>;

interface Invocation {
  readonly values: Values;
  readonly positionals: readonly string[];
  readonly config: CliConfig;
  readonly io: CliIo;
  readonly output: Output;
}

function parseFlags(command: Command, args: readonly string[]): { values: Values; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args: [...args], options: COMMANDS[command], allowPositionals: command === 'inspect', strict: true });
    return { values: values as Values, positionals };
  } catch (cause) {
    throw usage((cause as Error).message);
  }
}

const COMMAND_RUNNERS: Record<Command, (invocation: Invocation) => Promise<void>> = {
  async backup({ values, config, io, output }) {
    const given = pairs(values, io.cwd);
    const sources = given.length > 0 ? given.map(({ kind, name, value, options }) => kind.cli.source(name, value, options)) : config.sources;
    if (!sources?.length) throw usage(`Nothing to back up: give ${kindFlagList()}, or \`sources\` in a config file`);
    const to = strings(values['to']).map((spec) => destinationFromSpec(spec, io.cwd));
    const destinations = to.length > 0 ? to : config.to;
    if (destinations === undefined || (Array.isArray(destinations) && destinations.length === 0)) throw usage('No destination: give --to, or `to` in a config file');
    const algorithm = values['compression'] as 'gzip' | 'zstd' | 'none' | undefined;
    const level = values['compression-level'] === undefined ? undefined : integer(values['compression-level'], '--compression-level');
    const compression = { ...config.compression, ...(algorithm ? { algorithm } : {}), ...(level === undefined ? {} : { level }) };
    const encrypt = await encryptionOf(values, config, io);
    const sign = await signingOf(values, config, io);
    const lease = leaseOf(values, config);
    const op = new Database({ sources }).startBackup({
      to: destinations,
      ...(values['incremental'] ? { type: 'incremental' as const } : {}),
      compression,
      ...(encrypt ? { encrypt } : {}),
      ...(sign ? { sign } : {}),
      ...(lease === undefined ? {} : { lease }),
      ...(config.retention ? { retention: config.retention } : {}),
      signal: io.signal,
    });
    output.follow(op);
    const result = await op.done;
    output.emit({ ...line('result', result), command: 'backup' }, [
      result.unchanged
        ? `nothing changed since ${result.name}${chainText(result)}: nothing written`
        : `backed up ${result.name}${chainText(result)}: ${formatBytes(result.size)} in ${formatDuration(result.durationMs)} to ${result.destinations.join(', ')}`,
      ...result.sources.map((s) => `  ${s.name} (${s.kind}): ${formatBytes(s.bytes)}, ${counted(s.items, 'item')}`),
      `  sha256 ${result.sha256}`,
      ...(result.signedBy ? [`  signed by ${result.signedBy}`] : []),
      ...result.warnings.map((w) => `  warning: ${w.message}`),
    ]);
  },

  async restore({ values, config, io, output }) {
    const from = fromOf(values, config, io);
    const given = pairs(values, io.cwd);
    const targets = given.length > 0 ? Object.fromEntries(given.map(({ kind, name, value, options }) => [name, kind.cli.target(name, value, options) as RestoreTarget])) : config.targets;
    if (!targets || Object.keys(targets).length === 0) throw usage(`No targets: give ${kindFlagList()} name=where, or \`targets\` in a config file`);
    const op = Database.restore({ from, targets, signal: io.signal, ...backupName(values), ...(await decryptionOf(values, io)), ...(await verificationOf(values, config, io)) });
    output.follow(op);
    const result = await op.done;
    output.emit({ type: 'result', command: 'restore', ...result }, [
      `restored ${result.name} in ${formatDuration(result.durationMs)}; ${counted(result.verifiedEntries, 'entry', 'entries')} matched their SHA-256`,
      ...piecesLine(result.chain),
      ...signedLine(result.signedBy),
      ...result.sources.map((s) => `  ${s.name} (${s.kind}): ${formatBytes(s.bytes)}, ${counted(s.items, 'item')} -> ${describeTarget(s.kind, s.target)}`),
      ...(result.skipped.length > 0 ? [`  not restored (verified only): ${result.skipped.join(', ')}`] : []),
    ]);
  },

  async list({ values, config, io, output }) {
    const from = fromOf(values, config, io);
    const backups = await listBackups(from);
    if (backups.length === 0) output.emit({ type: 'empty', destination: from.description }, [`${from.description} holds no backups`]);
    for (const backup of backups) {
      const sources = backup.sources.map((s) => `${s.name}:${s.kind}`).join(' ');
      output.emit(line('backup', backup), [
        `${backup.name}  ${backup.createdAt.toISOString()}  ${formatBytes(backup.size).padStart(10)}${chainText(backup)}${backup.encrypted ? '  encrypted' : ''}${backup.signedBy ? `  signed ${backup.signedBy}` : ''}  ${sources}`,
        ...problemLine(backup.problem),
      ]);
    }
  },

  async verify({ values, config, io, output }) {
    const from = fromOf(values, config, io);
    const level = (values['level'] ?? 'checksums') as VerifyLevel;
    const scratchDir = values['scratch-dir'] as string | undefined;
    const servers = CLI_KINDS.flatMap(({ kind, cli }) => {
      const given = values[`scratch-${kind}`] as string | undefined;
      return given === undefined || !cli.scratchServer ? [] : [[kind, cli.scratchServer(given)] as const];
    });
    const scratch = { ...config.scratch, ...(scratchDir === undefined ? {} : { dir: resolve(io.cwd, scratchDir) }), ...Object.fromEntries(servers) };
    const op = verifyBackup({ from, level, scratch, signal: io.signal, ...backupName(values), ...(await decryptionOf(values, io)), ...(await verificationOf(values, config, io)) });
    output.follow(op);
    const result = await op.done;
    output.emit({ type: 'result', command: 'verify', ...result }, [
      `verified ${result.name} (level ${result.level}) in ${formatDuration(result.durationMs)}: ${counted(result.verifiedEntries, 'entry', 'entries')} matched their SHA-256`,
      ...piecesLine(result.chain),
      ...signedLine(result.signedBy),
      ...result.sources.flatMap((s) => [
        `  ${s.name} (${s.kind}): ${formatBytes(s.bytes)}, ${counted(s.items, 'entry', 'entries')}`,
        ...s.checks.map((c) => `    ok  ${c.name}: ${Object.entries(c.figures).map(([k, v]) => `${v} ${k}`).join(', ')}`),
      ]),
    ]);
  },

  async inspect({ values, positionals, io, output }) {
    if (positionals.length !== 1) throw usage('inspect takes one archive file: backupkit inspect <archive-file>');
    const file = resolve(io.cwd, positionals[0]!);
    const input = createReadStream(file);
    let count = 0;
    const { header, summary } = await inspectArchive(
      input,
      file,
      (await decryptionOf(values, io)).decrypt,
      (entry: ManifestEntry) => {
        count += 1;
        if (values['entries']) output.emit({ ...entry, type: 'entry' }, [`  ${entry.entryType.padEnd(9)} ${String(entry.size).padStart(12)}  ${entry.sha256.slice(0, 16)}  ${entry.path}`]);
      },
      io.signal,
    ).catch((error: unknown) => {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new BackupError('NOT_FOUND', `${file} does not exist`, { cause: error });
      throw error;
    });
    output.emit(line('header', header), [
      `${header.name}${chainText(header)}: backupkit format ${header.formatVersion}, written by backupkit ${header.backupkitVersion} at ${header.createdAt}`,
      `  compression ${header.compression.algorithm} level ${header.compression.level}${header.encryption ? `, encrypted (OpenPGP${header.encryption.passphrase ? ', passphrase' : ''}${header.encryption.recipients.length > 0 ? `, keys ${header.encryption.recipients.join(' ')}` : ''})` : ''}${header.signature ? `, signed by ${header.signature.fingerprint} (not checked)` : ''}`,
    ]);
    output.emit({ ...summary, type: 'summary' }, [
      `  ${counted(summary.entries, 'entry', 'entries')} (${count} listed in the manifest), ${counted(summary.warnings, 'warning')}`,
      ...summary.sources.map((s) => `  ${s.name} (${s.kind}): ${formatBytes(s.bytes)}, ${counted(s.items, 'item')}`),
    ]);
  },

  async prune({ values, config, io, output }) {
    const from = fromOf(values, config, io);
    const policy = retentionFromFlags(values) ?? config.retention;
    if (!policy) throw usage('No retention policy: give --keep-last, --keep-daily, --keep-weekly, --keep-monthly or --max-age, or `retention` in a config file');
    const result = await prune(from, policy, { dryRun: values['dry-run'] === true });
    const verb = result.dryRun ? 'would delete' : 'deleted';
    const rows = [
      ...result.kept.map((b) => ['keep', b.name, `(${b.reasons.join(', ')})`]),
      ...result.removed.map((b) => [result.dryRun ? 'drop' : 'deleted', b.name, '']),
      ...result.leftovers.map((name) => [result.dryRun ? 'drop' : 'deleted', name, '(left by an interrupted backup)']),
    ];
    // A kept backup's problem goes on the line below it, outside the columns.
    const lines = columns(rows).flatMap((line, i) => [line, ...problemLine(result.kept[i]?.problem)]);
    const summary = `${verb} ${counted(result.removed.length, 'backup')} and ${counted(result.leftovers.length, 'leftover')}, kept ${result.kept.length}`;
    const warnings = result.warnings.map((w) => `warning: ${w.message}`);
    output.emit({ type: 'result', command: 'prune', ...result }, [...lines, ...warnings, summary]);
  },

  async run({ values, config, io, output }) {
    const { db, options } = scheduleOf(config);
    // Listening before the schedule starts: a port in use fails the command before any backup.
    const metrics = await metricsOf(values, config);
    try {
      if (metrics) output.emit({ type: 'metrics', url: metrics.server.url }, [`metrics on ${metrics.server.url}`]);
      await runSchedule(db, { ...options, ...(metrics ? { metrics: { registry: metrics.registry } } : {}) }, values, io, output);
    } finally {
      await metrics?.server.close();
    }
  },

  async status({ config, output }) {
    const { db, options } = scheduleOf(config);
    const now = Date.now();
    const destinations = [options.to].flat() as Destination[];
    // A destination that cannot be listed (a folder no backup has made yet, a bucket out of reach) is reported, not fatal: status is a report.
    const listed = await Promise.all(
      destinations.map((destination) =>
        listBackups(destination).then(
          (backups) => ({ destination, backups, error: undefined }),
          (error: unknown) => ({ destination, backups: [], error: error as BackupError }),
        ),
      ),
    );
    const first = listed[0]?.backups ?? [];
    for (const type of ['full', 'incremental', 'verify'] as const) {
      const spec = options[type];
      if (spec === undefined) continue;
      const timing = parseTiming(type, spec, options.timeZone);
      const at = timing.next(now);
      const primary = type === 'full' || (type === 'incremental' && options.full === undefined);
      const overdue = primary && isOverdue(type as 'full' | 'incremental', timing, first, db.sources, now);
      output.emit({ type: 'schedule', runType: type, spec, timeZone: options.timeZone, next: at === undefined ? undefined : new Date(at), overdue }, [
        `${type.padEnd(11)} ${JSON.stringify(spec)}${options.timeZone ? ` (${options.timeZone})` : ''}: next ${at === undefined ? 'never' : new Date(at).toISOString()}${overdue ? '; overdue: `backupkit run` makes one at start' : ''}`,
      ]);
    }
    for (const { destination, backups, error } of listed) {
      if (error) {
        output.emit({ type: 'destination', destination: destination.description, error: { code: error.code, message: error.message } }, [`${destination.description}: cannot be listed: ${error.code}: ${error.message}`]);
        continue;
      }
      const newest = backups.slice(0, STATUS_BACKUPS);
      output.emit({ type: 'destination', destination: destination.description, backups: backups.length, newest: newest.map((b) => line('backup', b)) }, [
        `${destination.description}: ${counted(backups.length, 'backup')}${backups.length > 0 ? ', newest first:' : ''}`,
        ...newest.map((b) => `  ${b.name}  ${b.createdAt.toISOString()}  ${formatBytes(b.size).padStart(10)}  ${b.type ?? 'unknown'}${chainText(b)}`),
      ]);
    }
  },
};

/** Runs the schedule until the first signal, then stops it: waiting for a running backup, or cancelling it at a second signal. */
async function runSchedule(db: Database, options: ScheduleOptions, values: Values, io: CliIo, output: Output): Promise<void> {
  const schedule = db.schedule(options);
  // Progress bars are drawn for one operation: a person at a terminal gets a line per run instead.
  if (values['json'] === true || !io.stdout.isTTY) output.follow(schedule);
  schedule.on('scheduled', ({ type, at }) => output.emit({ type: 'scheduled', runType: type, at }, [`next ${type} at ${at.toISOString()}`]));
  schedule.on('run', ({ type, trigger }) => output.emit({ type: 'run', runType: type, trigger }, [`${type} starts (${trigger})`]));
  schedule.on('settled', (run) => output.emit({ ...run, type: 'settled', runType: run.type }, [runText(run)]));
  await new Promise<void>((resolve) => {
    if (io.signal.aborted) resolve();
    io.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  const running = schedule.status().running;
  output.emit({ type: 'stopping', running: running.map((r) => r.type) }, [running.length > 0 ? `stopping: waiting for the running ${running.map((r) => r.type).join(' and ')} (a second signal cancels it)` : 'stopping']);
  await schedule.stop(io.cancel ? { signal: io.cancel } : {});
  // Cancelled at a second signal: the command was interrupted, and says so with its exit code.
  if (io.cancel?.aborted && running.length > 0) throw io.cancel.reason;
  output.emit({ type: 'stopped' }, ['stopped']);
}

/** How many of each destination's backups `status` shows. */
const STATUS_BACKUPS = 5;

/** The Database and schedule options a config file's `sources`, `to` and `schedule` make. */
function scheduleOf(config: CliConfig): { db: Database; options: ScheduleOptions } {
  if (!config.sources?.length) throw usage('No sources: `backupkit run` and `status` take `sources` from a config file');
  const to = config.to;
  if (to === undefined || (Array.isArray(to) && to.length === 0)) throw usage('No destination: `backupkit run` and `status` take `to` from a config file');
  const schedule = config.schedule;
  if (schedule?.full === undefined && schedule?.incremental === undefined) throw usage('No schedule: add `schedule: { full, incremental, verify }` (cron expressions or intervals such as \'15m\') to the config file');
  checkTimeZone(schedule.timeZone);
  const { retention, compression, encrypt, sign, verifySignature, scratch } = config;
  const lease = schedule.lease ?? config.lease;
  // Scheduled verifications check signatures and use scratch space as `backupkit verify` does.
  const verification = { ...(verifySignature ? { verifySignature } : {}), ...(scratch ? { scratch } : {}), ...schedule.verification };
  // `metrics` here says where `run` serves them; the schedule's own `metrics` is the registry `run` makes.
  const { metrics: _served, ...timing } = schedule;
  const options: ScheduleOptions = { ...timing, to, verification, ...(retention ? { retention } : {}), ...(compression ? { compression } : {}), ...(encrypt ? { encrypt } : {}), ...(sign ? { sign } : {}), ...(lease === undefined ? {} : { lease }) };
  return { db: new Database({ sources: config.sources }), options };
}

/**
 * With --metrics-port or `schedule.metrics`: a registry of prom-client's own (without its default
 * process metrics, which are the application's to collect) served at /metrics. prom-client is
 * loaded first, so that without it the command fails with MISSING_DEPENDENCY before listening.
 */
async function metricsOf(values: Values, config: CliConfig): Promise<{ registry: Registry; server: MetricsServer } | undefined> {
  const configured = config.schedule?.metrics;
  const flag = values['metrics-port'];
  if (flag === undefined && configured === undefined) return undefined;
  const port = flag === undefined ? configured?.port : integer(flag, '--metrics-port');
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65_535) {
    throw usage(`${flag === undefined ? '`schedule.metrics.port`' : '--metrics-port'} takes a port from 0 to 65535, not ${JSON.stringify(flag ?? port)}`);
  }
  const host = configured?.host ?? '127.0.0.1';
  if (typeof host !== 'string' || host === '') throw usage(`\`schedule.metrics.host\` takes an address to listen on, such as 127.0.0.1, not ${JSON.stringify(host)}`);
  const { Registry } = loadPromClient();
  const registry = new Registry();
  return { registry, server: await serveMetrics(registry, port, host) };
}

/** One line per settled run, for a person. */
function runText(run: ScheduleRun): string {
  const what: Record<ScheduleRunType, string> = { full: 'full backup', incremental: 'incremental backup', verify: 'verification' };
  if (run.outcome === 'failed') return `${what[run.type]} failed: ${run.errorCode}: ${run.error}`;
  if (run.outcome === 'skipped') return `${what[run.type]} skipped (${run.reason})${run.name ? `: ${run.name}` : ''}`;
  const made = run.type === 'verify' ? `${run.name} is sound` : `${run.name}${run.backupType === run.type ? '' : ` (made as a ${run.backupType})`}, ${formatBytes(run.size ?? 0)}`;
  return `${what[run.type]} done: ${made} in ${formatDuration(run.finishedAt.getTime() - run.startedAt.getTime())}`;
}

/** A usage error; its hint, worded by `forCommandLine`, names the command's help. */
function usage(message: string): BackupError {
  return new BackupError('INVALID_OPTIONS', message);
}

function strings(value: Values[string]): string[] {
  return Array.isArray(value) ? value : typeof value === 'string' ? [value] : [];
}

function integer(value: Values[string], flag: string, least = 0): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < least) throw usage(`${flag} takes a whole number${least > 0 ? ` of ${least} or more` : ''}, not ${JSON.stringify(value)}`);
  return parsed;
}

/** Rows of cells padded into aligned columns, without trailing spaces. */
function columns(rows: ReadonlyArray<readonly string[]>): string[] {
  const widths = rows.reduce<number[]>((max, row) => row.map((cell, i) => Math.max(cell.length, max[i] ?? 0)), []);
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ').trimEnd());
}

/** `--sqlite, --files or --postgres`: the flags that name sources and targets. */
function kindFlagList(): string {
  return alternatives(CLI_KINDS.map(({ kind }) => `--${kind}`));
}

/** The `name=value` pairs of every `--<kind>` flag, by kind in the registry's order, with the kind's own flags. */
function pairs(values: Values, cwd: string): Array<{ kind: (typeof CLI_KINDS)[number]; name: string; value: string; options: SourceKindCliOptions }> {
  return CLI_KINDS.flatMap((kind) => {
    const given = strings(values[kind.kind]);
    const flags: Record<string, string> = {};
    for (const flag of Object.keys(kind.cli.flags ?? {})) {
      const value = values[flag] as string | undefined;
      if (value === undefined) continue;
      // A flag of one kind given without that kind would be silently ignored.
      if (given.length === 0) throw usage(`--${flag} applies to --${kind.kind} sources and targets only: give it with --${kind.kind}`);
      flags[flag] = value;
    }
    return given.map((pair) => {
      const at = pair.indexOf('=');
      if (at <= 0 || at === pair.length - 1) throw usage(`--${kind.kind} takes name=${kind.cli.value}, not ${JSON.stringify(pair)}`);
      return { kind, name: pair.slice(0, at), value: pair.slice(at + 1), options: { cwd, flags } };
    });
  });
}

function fromOf(values: Values, config: CliConfig, io: CliIo): Destination {
  const spec = values['from'] as string | undefined;
  if (spec !== undefined) return destinationFromSpec(spec, io.cwd);
  const configured = config.from ?? (Array.isArray(config.to) ? config.to[0] : config.to);
  if (!configured) throw usage('No destination to read: give --from, or `from` or `to` in a config file');
  return configured as Destination;
}

/** `--backup name`, or `--as-of time`: the newest backup made at or before it. */
function backupName(values: Values): { backup?: string; asOf?: Date } {
  const backup = values['backup'] as string | undefined;
  const asOf = values['as-of'] as string | undefined;
  if (asOf === undefined) return backup === undefined ? {} : { backup };
  if (backup !== undefined) throw usage('Give --backup or --as-of, not both');
  const time = new Date(asOf);
  if (Number.isNaN(time.getTime())) throw usage(`--as-of ${JSON.stringify(asOf)} is not a time: write it as 2026-11-21T12:45:00Z`);
  return { asOf: time };
}

function retentionFromFlags(values: Values): RetentionPolicy | undefined {
  const policy: { -readonly [K in keyof RetentionPolicy]: RetentionPolicy[K] } = {};
  const counts = { 'keep-last': 'keepLast', 'keep-daily': 'keepDaily', 'keep-weekly': 'keepWeekly', 'keep-monthly': 'keepMonthly' } as const;
  for (const [flag, key] of Object.entries(counts)) if (values[flag] !== undefined) policy[key] = integer(values[flag], `--${flag}`);
  const maxAge = values['max-age'] as string | undefined;
  // Units only: the library's other form, milliseconds, is not what anyone types on a command line.
  if (maxAge !== undefined && !/^\d+[hdw]$/.test(maxAge)) throw usage(`--max-age takes hours, days or weeks, as 36h, 30d or 8w, not ${JSON.stringify(maxAge)}`);
  if (maxAge !== undefined) policy.maxAge = maxAge;
  return Object.keys(policy).length > 0 ? policy : undefined;
}

const DURATION = /^(\d+)(ms|s|m|h)$/;
const DURATION_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/** `--lease` and `--lease-ttl` (which implies it), or the config's `lease`; the library checks the ttl's bounds. */
function leaseOf(values: Values, config: CliConfig): CliConfig['lease'] {
  const ttl = values['lease-ttl'] as string | undefined;
  if (ttl !== undefined) {
    const parsed = DURATION.exec(ttl);
    if (!parsed) throw usage(`--lease-ttl takes a duration, as 500ms, 30s, 2m or 1h, not ${JSON.stringify(ttl)}`);
    return { ttlMs: Number(parsed[1]) * (DURATION_MS[parsed[2]!] as number) };
  }
  return values['lease'] === true ? true : config.lease;
}

/** The passphrase from BACKUPKIT_PASSPHRASE or --passphrase-file; never from a flag's value. */
async function passphraseOf(values: Values, io: CliIo): Promise<string | undefined> {
  const file = values['passphrase-file'] as string | undefined;
  if (file !== undefined) return (await readText(resolve(io.cwd, file))).replace(/\r?\n$/, '');
  return io.env['BACKUPKIT_PASSPHRASE'] || undefined;
}

async function encryptionOf(values: Values, config: CliConfig, io: CliIo): Promise<EncryptOptions | undefined> {
  const recipientFiles = strings(values['recipient']);
  if (!values['encrypt'] && recipientFiles.length === 0 && !config.encrypt) return undefined;
  const passphrase = (await passphraseOf(values, io)) ?? config.encrypt?.passphrase;
  const recipients = [...(config.encrypt?.recipients ?? []), ...(await Promise.all(recipientFiles.map((file) => readText(resolve(io.cwd, file)))))];
  if (passphrase === undefined && recipients.length === 0) {
    throw usage('--encrypt needs a passphrase (BACKUPKIT_PASSPHRASE or --passphrase-file) or --recipient public-key files');
  }
  return { ...(passphrase === undefined ? {} : { passphrase }), ...(recipients.length > 0 ? { recipients } : {}) };
}

async function decryptionOf(values: Values, io: CliIo): Promise<{ decrypt?: DecryptOptions }> {
  const keyFile = values['private-key-file'] as string | undefined;
  if (keyFile !== undefined) {
    const privateKey = await readText(resolve(io.cwd, keyFile));
    const passphrase = io.env['BACKUPKIT_KEY_PASSPHRASE'] || undefined;
    return { decrypt: { privateKey, ...(passphrase === undefined ? {} : { passphrase }) } };
  }
  const passphrase = await passphraseOf(values, io);
  return passphrase === undefined ? {} : { decrypt: { passphrase } };
}

/** The signing key from --sign-key-file (its passphrase from BACKUPKIT_SIGN_KEY_PASSPHRASE), or the config's. */
async function signingOf(values: Values, config: CliConfig, io: CliIo): Promise<SignOptions | undefined> {
  const keyFile = values['sign-key-file'] as string | undefined;
  if (keyFile === undefined) return config.sign;
  const passphrase = io.env['BACKUPKIT_SIGN_KEY_PASSPHRASE'] || undefined;
  return { privateKey: await readText(resolve(io.cwd, keyFile)), ...(passphrase === undefined ? {} : { passphrase }) };
}

/** The keys of every --verify-key-file, with the config's. */
async function verificationOf(values: Values, config: CliConfig, io: CliIo): Promise<{ verifySignature?: VerifySignatureOptions }> {
  const fromFiles = await Promise.all(strings(values['verify-key-file']).map((file) => readText(resolve(io.cwd, file))));
  const publicKeys = [...(config.verifySignature?.publicKeys ?? []), ...fromFiles];
  return publicKeys.length > 0 ? { verifySignature: { publicKeys } } : {};
}

/** Under a backup whose sidecar does not vouch for it: why, and that retention keeps it. */
function problemLine(problem: BackupProblem | undefined): string[] {
  return problem === undefined ? [] : [`  unknown (${problem.code}): ${problem.message}; never deleted by prune`];
}

/** For an incremental restored from its chain: the backups read besides the one named, newest first. */
function piecesLine(chain: readonly string[]): string[] {
  return chain.length > 1 ? [`  with the ${counted(chain.length - 1, 'backup')} it builds on: ${chain.slice(1).join(', ')}`] : [];
}

function signedLine(signedBy: string | undefined): string[] {
  return signedBy === undefined ? [] : [`  signature good: signed by ${signedBy}`];
}

/** The restore result's target (its secrets already redacted) as its kind describes it. */
function describeTarget(kind: string, target: unknown): string {
  return sourceKind(kind)?.describeTarget(target) ?? JSON.stringify(target);
}

/** ` (incremental on <previous>)` for an incremental; nothing for a full, as before there were incrementals. */
function chainText({ type, previous }: { type?: string | undefined; previous?: string | undefined }): string {
  return type === 'incremental' ? ` (incremental on ${previous})` : '';
}

/** A JSON line of kind `kind`: `type` names the kind of line, so a backup's own type is `backupType`. */
function line<T extends { type?: string | undefined }>(kind: string, value: T): Omit<T, 'type'> & { type: string; backupType: T['type'] } {
  const { type: backupType, ...rest } = value;
  return { type: kind, backupType, ...rest };
}
