/**
 * Operating backups from the command line, as real processes of the built CLI: `backup --lease`
 * against a lease another process holds, and `run`'s Prometheus endpoint scraped with `fetch`.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import * as nodeModule from 'node:module';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { pathToFileURL } from 'node:url';
import { directory, listBackups } from '../src/index.js';
import { BIN, cli } from './helpers/cli.js';
import { tempDir } from './helpers/fs.js';

type Line = { type: string } & Record<string, unknown>;

/** An application folder with a small `uploads` folder and an empty `backups` folder. */
async function application(t: TestContext): Promise<string> {
  const dir = await tempDir(t, 'cli-ops');
  await mkdir(join(dir, 'uploads'));
  await mkdir(join(dir, 'backups'));
  await writeFile(join(dir, 'uploads', 'a.txt'), 'hello');
  return dir;
}

describe('backupkit backup --lease', () => {
  it('writes nothing and exits 4 while another process holds the lease, from the flag or the config; once it is released, backs up under a lease of --lease-ttl', async (t) => {
    const dir = await application(t);
    const backups = directory({ path: join(dir, 'backups') });
    const other = await backups.lease!('backupkit.lease', { ttlMs: 60_000, holder: 'host elsewhere, pid 1' });

    const flagged = await cli(['backup', '--files', 'uploads=uploads', '--to', 'backups', '--lease'], { cwd: dir });
    assert.equal(flagged.code, 4, flagged.stderr);
    assert.match(flagged.stderr, /^backupkit: LEASE_HELD: .* is held by host elsewhere, pid 1 \(token 1\) until /m);
    assert.match(flagged.stderr, /hint: Another process \(host elsewhere, pid 1\) is backing up to this destination/);

    await writeFile(join(dir, 'backupkit.config.json'), JSON.stringify({ sources: [{ kind: 'files', name: 'uploads', dir: 'uploads' }], to: 'backups', lease: true }));
    const configured = await cli(['backup', '--json'], { cwd: dir });
    assert.equal(configured.code, 4, configured.stderr);
    assert.match(configured.stdout, /"code":"LEASE_HELD"/);
    assert.deepEqual(await listBackups(backups), [], 'nothing was written');

    await other.release();
    const made = await cli(['backup', '--lease-ttl', '2s'], { cwd: dir });
    assert.equal(made.code, 0, made.stderr);
    assert.equal((await listBackups(backups)).length, 1);
    // The lease is never deleted: its newest take is this backup's, released, with the flag's ttl.
    const takes = (await readdir(join(dir, 'backups'))).filter((name) => /^\.backupkit\.lease\.\d+$/.test(name));
    assert.deepEqual(takes, ['.backupkit.lease.2'], 'the backup took the lease after the other holder');
    const record = JSON.parse(await readFile(join(dir, 'backups', takes[0]!), 'utf8')) as { ttlMs: number; released: boolean; holder: string };
    assert.deepEqual([record.ttlMs, record.released], [2_000, true]);
    assert.doesNotMatch(record.holder, /elsewhere/);
  });

  it('refuses a --lease-ttl that is not a duration, or shorter than a lease can be renewed in, with exit code 2', async (t) => {
    const dir = await application(t);
    const unitless = await cli(['backup', '--files', 'uploads=uploads', '--to', 'backups', '--lease-ttl', '30'], { cwd: dir });
    assert.equal(unitless.code, 2);
    assert.match(unitless.stderr, /--lease-ttl takes a duration, as 500ms, 30s, 2m or 1h, not "30"/);
    const short = await cli(['backup', '--files', 'uploads=uploads', '--to', 'backups', '--lease-ttl', '100ms'], { cwd: dir });
    assert.equal(short.code, 2, short.stderr);
    assert.match(short.stderr, /INVALID_OPTIONS: `lease` must be/);
    assert.deepEqual(await listBackups(directory({ path: join(dir, 'backups') })), []);
  });
});

/**
 * `backupkit run` as a child process printing JSON lines: `next(when)` resolves with the first line
 * matching `when` (rejecting if the process exits first); `exited` with its exit code.
 */
function daemon(t: TestContext, cwd: string, args: readonly string[], nodeOptions: readonly string[] = []) {
  const child = spawn(process.execPath, [...nodeOptions, BIN, 'run', '--json', ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => void child.kill('SIGKILL'));
  const lines: Line[] = [];
  const waiting = new Set<{ when: (line: Line) => boolean; resolve: (line: Line) => void; reject: (error: Error) => void }>();
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    for (let end = stdout.indexOf('\n'); end >= 0; end = stdout.indexOf('\n')) {
      const line = JSON.parse(stdout.slice(0, end)) as Line;
      stdout = stdout.slice(end + 1);
      lines.push(line);
      for (const waiter of waiting) {
        if (!waiter.when(line)) continue;
        waiting.delete(waiter);
        waiter.resolve(line);
      }
    }
  });
  const exited = once(child, 'exit').then(([code]) => {
    for (const waiter of waiting) waiter.reject(new Error(`backupkit run exited (${String(code)}) first: ${stderr}`));
    return code as number | null;
  });
  const next = (when: (line: Line) => boolean) =>
    new Promise<Line>((resolve, reject) => {
      const found = lines.find(when);
      if (found) resolve(found);
      else waiting.add({ when, resolve, reject });
    });
  return { child, lines, exited, next, stderr: () => stderr };
}

/** A config file scheduling a daily full backup of `uploads` into `backups`, with `schedule` added. */
async function scheduled(dir: string, schedule: Record<string, unknown> = {}): Promise<void> {
  const config = { sources: [{ kind: 'files', name: 'uploads', dir: 'uploads' }], to: 'backups', schedule: { full: '1d', ...schedule } };
  await writeFile(join(dir, 'backupkit.config.json'), JSON.stringify(config));
}

/** The value of the series `name{labels}` in a Prometheus text exposition, or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('backupkit run --metrics-port', () => {
  it('serves the schedule\'s metrics on 127.0.0.1 without prom-client\'s default ones: after the catch-up full, its last success and size; stops serving at SIGTERM', async (t) => {
    const dir = await application(t);
    await scheduled(dir);
    const run = daemon(t, dir, ['--metrics-port', '0']);
    const { url } = (await run.next((l) => l.type === 'metrics')) as Line & { url: string };
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const settled = await run.next((l) => l.type === 'settled');
    assert.equal(settled['outcome'], 'succeeded', JSON.stringify(settled));

    const response = await fetch(url);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await response.text();
    const finished = Date.parse(settled['finishedAt'] as string) / 1000;
    assert.equal(sample(text, 'backupkit_schedule_last_success_timestamp_seconds{schedule="default",type="full"}'), finished);
    assert.equal(sample(text, 'backupkit_schedule_last_size_bytes{schedule="default",type="full"}'), settled['size']);
    assert.equal(sample(text, 'backupkit_schedule_failures_total{schedule="default",type="full"}'), 0);
    assert.doesNotMatch(text, /^(process|nodejs)_/m, 'no default metrics');
    assert.equal((await fetch(new URL('/', url))).status, 404);

    run.child.kill('SIGTERM');
    assert.equal(await run.exited, 0, run.stderr());
    assert.equal(run.lines.at(-1)?.type, 'stopped');
    await assert.rejects(fetch(url), 'nothing listens any more');
  });

  it('takes the port and host from the config\'s schedule section; refuses a port in use before any backup, with exit code 2', async (t) => {
    const dir = await application(t);
    await writeFile(join(dir, 'first.json'), JSON.stringify({ sources: [{ kind: 'files', name: 'uploads', dir: 'uploads' }], to: 'first', schedule: { full: '1d', metrics: { port: 0, host: 'localhost' } } }));
    const first = daemon(t, dir, ['--config', 'first.json']);
    const { url } = (await first.next((l) => l.type === 'metrics')) as Line & { url: string };
    assert.match(url, /^http:\/\/(127\.0\.0\.1|\[::1\]):\d+\/metrics$/, 'localhost, as the config says');
    await first.next((l) => l.type === 'settled');
    assert.ok((await (await fetch(url)).text()).includes('backupkit_schedule_last_size_bytes{schedule="default",type="full"}'));

    await scheduled(dir, { metrics: { port: Number(new URL(url).port), host: new URL(url).hostname.replace(/^\[|\]$/g, '') } });
    const second = await cli(['run', '--json'], { cwd: dir });
    assert.equal(second.code, 2, second.stderr);
    assert.match(second.stderr, /INVALID_OPTIONS: Cannot serve metrics on .*EADDRINUSE/);
    assert.deepEqual(await readdir(join(dir, 'backups')), [], 'no backup was started');

    first.child.kill('SIGTERM');
    assert.equal(await first.exited, 0, first.stderr());
  });

  it('without prom-client installed, refuses with MISSING_DEPENDENCY before any backup', { skip: !('registerHooks' in nodeModule) && 'needs module.registerHooks (Node.js 22.15)' }, async (t) => {
    const dir = await application(t);
    await scheduled(dir, { metrics: { port: 0 } });
    const hooks = pathToFileURL(join(import.meta.dirname, 'helpers', 'without-prom-client.js')).href;
    const run = daemon(t, dir, [], ['--import', hooks]);
    assert.equal(await run.exited, 1, run.stderr());
    assert.match(run.stderr(), /MISSING_DEPENDENCY: Schedule metrics need the package prom-client, an optional peer dependency of backupkit, which is not installed/);
    assert.match(run.stderr(), /npm install prom-client/);
    assert.deepEqual(run.lines.map((l) => l.type), ['error']);
    assert.deepEqual(await readdir(join(dir, 'backups')), []);
  });

  it('refuses a --metrics-port that is not a port, with exit code 2', async (t) => {
    const dir = await application(t);
    await scheduled(dir);
    const run = await cli(['run', '--metrics-port', '65536'], { cwd: dir });
    assert.equal(run.code, 2);
    assert.match(run.stderr, /--metrics-port takes a port from 0 to 65535, not "65536"/);
  });
});

describe('backupkit run with a config file elsewhere', () => {
  it("resolves the schedule's relative verification.scratch.dir against the config file's folder, not the working folder", async (t) => {
    const dir = await application(t);
    await mkdir(join(dir, 'ops', 'scratch'), { recursive: true });
    const schedule = { full: '1d', verify: '1s', verification: { level: 'restore', scratch: { dir: 'scratch' } } };
    await writeFile(join(dir, 'ops', 'backupkit.config.json'), JSON.stringify({ sources: [{ kind: 'files', name: 'uploads', dir: '../uploads' }], to: 'backups', schedule }));
    // Run from the application folder, which has no `scratch`: the throwaway targets could not be made there.
    const run = daemon(t, dir, ['--config', 'ops/backupkit.config.json']);
    const full = await run.next((l) => l.type === 'settled' && l['runType'] === 'full');
    assert.equal(full['outcome'], 'succeeded', JSON.stringify(full));
    // Verifications due before the full was committed found nothing to verify: the first one after it counts.
    const verified = await run.next((l) => l.type === 'settled' && l['runType'] === 'verify' && Date.parse(l['startedAt'] as string) >= Date.parse(full['finishedAt'] as string));
    assert.deepEqual([verified['outcome'], verified['name'], verified['errorCode']], ['succeeded', full['name'], undefined], JSON.stringify(verified));
    run.child.kill('SIGTERM');
    assert.equal(await run.exited, 0, run.stderr());
    assert.deepEqual(await readdir(join(dir, 'ops', 'scratch')), [], 'the throwaway targets were made there, and removed');
  });
});
