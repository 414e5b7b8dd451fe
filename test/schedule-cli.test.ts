/**
 * `backupkit run` and `backupkit status` as real processes of the built CLI: the daemon under
 * SIGTERM mid-backup lets the backup finish, under a second signal cancels it, and in neither case
 * leaves anything partial in the destination.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { pathToFileURL } from 'node:url';
import { directory, listBackups } from '../src/index.js';
import { BIN, ROOT, cli, records } from './helpers/cli.js';
import { tempDir } from './helpers/fs.js';

type Line = { type: string } & Record<string, unknown>;

/** An application folder: 96 MiB of uploads (enough for a backup to be caught running) and a config scheduling them into `backups`. */
async function application(t: TestContext): Promise<string> {
  const dir = await tempDir(t, 'schedule-cli');
  await mkdir(join(dir, 'uploads'));
  for (let i = 0; i < 3; i++) await writeFile(join(dir, 'uploads', `blob-${i}`), randomBytes(32 * 1024 * 1024));
  const library = pathToFileURL(join(ROOT, 'dist', 'index.js')).href;
  await writeFile(
    join(dir, 'backupkit.config.mjs'),
    `import { directory, files } from ${JSON.stringify(library)};
export default {
  sources: [files({ name: 'uploads', dir: 'uploads' })],
  to: directory({ path: 'backups' }),
  schedule: { full: '1d', incremental: '1h' },
};
`,
  );
  return dir;
}

/**
 * Runs `backupkit run` and sends each signal of `plan` once a JSON line it prints matches its
 * condition, in order; resolves with the exit code and every line.
 */
async function daemon(cwd: string, plan: ReadonlyArray<{ when: (line: Line) => boolean; signal: NodeJS.Signals }>): Promise<{ code: number | null; lines: Line[]; stderr: string }> {
  const child = spawn(process.execPath, [BIN, 'run', '--config', 'backupkit.config.mjs'], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let step = 0;
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    const complete = records(stdout.slice(0, stdout.lastIndexOf('\n') + 1));
    const next = plan[step];
    if (next && complete.some(next.when)) {
      step += 1;
      child.kill(next.signal);
    }
  });
  const [code] = (await once(child, 'exit')) as [number | null];
  assert.equal(step, plan.length, `the daemon ended before every signal was sent: ${stdout.slice(-400)} ${stderr}`);
  return { code, lines: records(stdout), stderr };
}

const midBackup = (line: Line) => line.type === 'progress' && line['phase'] !== 'snapshot' && ((line['percent'] as number | undefined) ?? 0) > 0;

describe('backupkit run and status', () => {
  it('status before any backup: when each type runs next, the full overdue, the folder not made yet', async (t) => {
    const dir = await application(t);
    const status = await cli(['status', '--config', 'backupkit.config.mjs'], { cwd: dir });
    assert.equal(status.code, 0, status.stderr);
    const lines = records(status.stdout);
    const schedules = lines.filter((l) => l.type === 'schedule');
    assert.deepEqual(schedules.map((l) => [l['runType'], l['spec'], l['overdue']]), [['full', '1d', true], ['incremental', '1h', false]]);
    const nextFull = Date.parse(schedules[0]?.['next'] as string);
    assert.equal(nextFull % 86_400_000, 0, "'1d' runs at 00:00 UTC");
    assert.ok(nextFull > Date.now());
    const destination = lines.find((l) => l.type === 'destination');
    assert.equal((destination?.['error'] as { code: string } | undefined)?.code, 'NOT_FOUND', 'no backup has made the folder yet');
  });

  it('SIGTERM mid-backup: the running backup finishes and is committed whole, then the daemon exits 0; status lists it', async (t) => {
    const dir = await application(t);
    const run = await daemon(dir, [{ when: midBackup, signal: 'SIGTERM' }]);
    assert.equal(run.code, 0, run.stderr);
    const types = run.lines.map((l) => l.type);
    assert.deepEqual(run.lines.find((l) => l.type === 'run'), { type: 'run', runType: 'full', trigger: 'catch-up' });
    assert.deepEqual(run.lines.find((l) => l.type === 'stopping')?.['running'], ['full'], 'the signal came while the backup ran');
    const settled = run.lines.find((l) => l.type === 'settled');
    assert.equal(settled?.['outcome'], 'succeeded', JSON.stringify(settled));
    assert.ok(types.indexOf('stopping') < types.indexOf('settled'), 'the backup settled after the signal');
    assert.equal(types.at(-1), 'stopped');

    const backups = await listBackups(directory({ path: join(dir, 'backups') }));
    assert.deepEqual(backups.map((b) => [b.name, b.trust, b.type]), [[settled?.['name'], 'trusted', 'full']]);
    const stored = await readdir(join(dir, 'backups'));
    assert.ok(stored.includes(backups[0]!.name) && stored.includes(`${backups[0]!.name}.json`));
    assert.ok(stored.every((name) => name.startsWith(backups[0]!.name)), `only the backup's own objects (archive, sidecar, state): no claim, no hidden partial: ${stored.join(' ')}`);

    const status = records((await cli(['status', '--config', 'backupkit.config.mjs'], { cwd: dir })).stdout);
    assert.equal(status.find((l) => l.type === 'schedule' && l['runType'] === 'full')?.['overdue'], false);
    const listed = status.find((l) => l.type === 'destination');
    assert.equal(listed?.['backups'], 1);
    assert.deepEqual((listed?.['newest'] as Line[]).map((b) => b['name']), [backups[0]!.name]);
  });

  it('a second signal cancels the running backup: exit 143, nothing partial left or listed', async (t) => {
    const dir = await application(t);
    const run = await daemon(dir, [
      { when: midBackup, signal: 'SIGTERM' },
      { when: (line) => line.type === 'stopping', signal: 'SIGINT' },
    ]);
    assert.equal(run.code, 143, run.stderr);
    const settled = run.lines.find((l) => l.type === 'settled');
    assert.deepEqual([settled?.['outcome'], settled?.['errorCode']], ['failed', 'ABORTED']);
    assert.equal(run.lines.at(-1)?.type, 'error');
    assert.deepEqual(await listBackups(directory({ path: join(dir, 'backups') })), []);
    assert.deepEqual(await readdir(join(dir, 'backups')), [], 'no archive, sidecar, claim or hidden .partial');
  });

  it('refuses a config without a schedule, with exit code 2', async (t) => {
    const dir = await tempDir(t, 'schedule-cli');
    await writeFile(join(dir, 'backupkit.config.json'), JSON.stringify({ sources: [{ kind: 'files', name: 'u', dir: '.' }], to: 'backups' }));
    const run = await cli(['run'], { cwd: dir });
    assert.equal(run.code, 2);
    assert.match(run.stderr, /No schedule/);
  });
});
