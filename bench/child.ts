/**
 * Runs one backupkit backup or restore in its own process and reports, as one JSON line, its wall
 * time, peak RSS and the longest event-loop stall, as the host application would feel them.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { azure, Database, directory, files, ftp, postgres, s3, sftp, sqlite, type Destination, type Source } from 'backupkit';

const [mode = '', kind = '', sourcePath = '', archiveDir = '', target = ''] = process.argv.slice(2);
// The passphrase comes from the environment, as it should in production: never from argv.
const passphrase = process.env.BENCH_PASSPHRASE;
const stalls = monitorEventLoopDelay({ resolution: 10 });
stalls.enable();
// A stall as the wall clock sees it also counts the time the OS gave the CPU to other processes;
// the main thread's own CPU time between two turns of its loop is what backupkit blocked it for.
const threadCpuMs = () => {
  // Node >= 23.9; older ones count the worker threads too, and overstate.
  const thread = (process as { threadCpuUsage?: () => NodeJS.CpuUsage }).threadCpuUsage;
  const { user, system } = thread ? thread.call(process) : process.cpuUsage();
  return (user + system) / 1000;
};
let lastTurnCpuMs = threadCpuMs();
let maxBusyMs = 0;
const turns = setInterval(() => {
  const now = threadCpuMs();
  maxBusyMs = Math.max(maxBusyMs, now - lastTurnCpuMs);
  lastTurnCpuMs = now;
}, 5);
const started = performance.now();

if (mode === 'backup') {
  // For PostgreSQL the source is a connection string.
  const source: Source =
    kind === 'sqlite' ? sqlite({ name: 'data', path: sourcePath }) : kind === 'postgres' ? postgres({ name: 'data', connection: sourcePath, jobs: 2 }) : files({ name: 'data', dir: sourcePath });
  const encrypt = passphrase ? { encrypt: { passphrase } } : {};
  // BENCH_S3=endpoint/bucket adds (or with archiveDir '-', is) an S3 destination; the archive is stored uncompressed.
  const to: Destination[] = archiveDir === '-' ? [] : [directory({ path: archiveDir })];
  const [endpoint, bucket] = (process.env.BENCH_S3 ?? '').split('|');
  if (endpoint && bucket) to.push(s3({ bucket, endpoint, forcePathStyle: true, credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' } }));
  // BENCH_DESTINATION={"kind":"sftp",...options}: a remote destination of the destinations bench, stored uncompressed.
  const remote = process.env.BENCH_DESTINATION ? (JSON.parse(process.env.BENCH_DESTINATION) as { kind: string } & Record<string, unknown>) : undefined;
  if (remote) {
    const factories: Record<string, (options: never) => Destination> = { directory, s3, azure, sftp, ftp };
    const factory = factories[remote.kind];
    if (!factory) throw new Error(`BENCH_DESTINATION: no destination kind ${remote.kind}`);
    const { kind: _kind, ...options } = remote;
    to.push(factory(options as never));
  }
  // BENCH_COMPRESSION=algorithm:level, e.g. zstd:1; S3 and destination runs store the archive uncompressed.
  const [algorithm, level] = (process.env.BENCH_COMPRESSION ?? '').split(':');
  const compression = endpoint || remote
    ? { compression: { algorithm: 'none' as const } }
    : algorithm === 'zstd' || algorithm === 'gzip'
      ? { compression: { algorithm: algorithm as 'zstd' | 'gzip', level: Number(level ?? 1) } }
      : {};
  // BENCH_TYPE=incremental: only what changed since the previous backup in the folder (a full when there is none).
  const type = process.env.BENCH_TYPE === 'incremental' ? ('incremental' as const) : ('full' as const);
  await new Database({ sources: [source] }).startBackup({ to, type, ...encrypt, ...compression }).done;
} else {
  // For PostgreSQL the target is `<server connection string> <database>`.
  const [connection = '', database = ''] = target.split(' ');
  const targets = { data: kind === 'sqlite' ? { path: target } : kind === 'postgres' ? { connection, database, jobs: 2 } : { dir: target } };
  await Database.restore({ from: directory({ path: archiveDir }), targets, ...(passphrase ? { decrypt: { passphrase } } : {}) });
}

stalls.disable();
clearInterval(turns);
const cpu = process.cpuUsage();
process.stdout.write(
  `${JSON.stringify({
    seconds: (performance.now() - started) / 1000,
    peakRssMb: process.resourceUsage().maxRSS / 1024,
    maxStallMs: stalls.max / 1e6,
    maxBusyMs,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
  })}\n`,
);
