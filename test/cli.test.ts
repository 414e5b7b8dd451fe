/**
 * The `backupkit` command, run as a user runs it: the built binary in a subprocess, its output
 * and exit code checked; progress bars under a real pseudo-terminal made by `script`.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { bankSummary, createBank } from './helpers/sqlite.js';
import { describeTree, tempDir } from './helpers/fs.js';
import { MOTO_CREDENTIALS, startMoto, type Moto } from './helpers/moto.js';
import { createDatabase, pgUrl, sql } from './helpers/postgres.js';

const execFileAsync = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'dist', 'cli', 'main.js');
const PASSPHRASE = `correct horse ${randomBytes(6).toString('hex')}`;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(args: readonly string[], options: { cwd: string; env?: NodeJS.ProcessEnv }): Promise<Run> {
  const env = { PATH: process.env['PATH'], HOME: process.env['HOME'], ...options.env };
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [BIN, ...args], { cwd: options.cwd, env, maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

function records(stdout: string): Array<{ type: string } & Record<string, unknown>> {
  return stdout
    .trim()
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as { type: string } & Record<string, unknown>);
}

/** An application folder: app.db and uploads/, as the README's example has. */
async function application(t: Parameters<typeof tempDir>[0], uploadBytes = 10_000) {
  const dir = await tempDir(t, 'cli');
  createBank(join(dir, 'app.db'), 40, 25);
  await mkdir(join(dir, 'uploads', 'avatars'), { recursive: true });
  await writeFile(join(dir, 'uploads', 'avatars', 'a.png'), randomBytes(uploadBytes));
  await writeFile(join(dir, 'uploads', 'notes.txt'), 'notes');
  return dir;
}

describe('backupkit command line', () => {
  it('backup, list, verify, inspect and restore from flags, with JSON lines when not on a terminal', async (t) => {
    const dir = await application(t);
    const backup = await cli(['backup', '--sqlite', 'app=app.db', '--files', 'uploads=uploads', '--to', 'backups'], { cwd: dir });
    assert.equal(backup.code, 0, backup.stderr);
    const events = records(backup.stdout);
    assert.deepEqual([...new Set(events.map((e) => e.type))], ['start', 'progress', 'source-start', 'source-end', 'result']);
    const result = events.at(-1)!;
    assert.equal(result['command'], 'backup');
    const name = result['name'] as string;
    assert.match(name, /^\d{8}-\d{6}\.tar\.gz$/);

    const list = records((await cli(['list', '--from', 'backups'], { cwd: dir })).stdout);
    assert.deepEqual(list.map((r) => [r.type, r['name']]), [['backup', name]]);

    const verify = await cli(['verify', '--from', 'backups', '--level', 'restore', '--scratch-dir', '.'], { cwd: dir });
    assert.equal(verify.code, 0, verify.stderr);
    const verified = records(verify.stdout).at(-1)!;
    assert.equal(verified['level'], 'restore');
    assert.deepEqual(verified['problems'], []);

    const inspect = await cli(['inspect', join('backups', name), '--entries'], { cwd: dir });
    assert.equal(inspect.code, 0, inspect.stderr);
    const shown = records(inspect.stdout);
    assert.deepEqual(shown.filter((r) => r.type === 'entry').map((r) => r['path']), [
      'header.json',
      'sources/app/database.sqlite',
      'sources/uploads',
      'sources/uploads/avatars',
      'sources/uploads/avatars/a.png',
      'sources/uploads/notes.txt',
    ]);
    assert.equal(shown.find((r) => r.type === 'header')?.['name'], name);
    assert.equal(shown.find((r) => r.type === 'summary')?.['entries'], 6);

    const restore = await cli(['restore', '--from', 'backups', '--sqlite', 'app=restored/app.db', '--files', 'uploads=restored/uploads'], { cwd: dir });
    assert.equal(restore.code, 0, restore.stderr);
    assert.equal(bankSummary(join(dir, 'restored', 'app.db')).total, 1000);
    assert.deepEqual(await describeTree(join(dir, 'restored', 'uploads')), await describeTree(join(dir, 'uploads')));

    const again = await cli(['restore', '--from', 'backups', '--files', 'uploads=restored/uploads'], { cwd: dir });
    assert.equal(again.code, 1);
    assert.equal(records(again.stdout).at(-1)?.['code'], 'TARGET_NOT_EMPTY');
    assert.match(again.stderr, /^backupkit: TARGET_NOT_EMPTY: .*\n {2}hint: /);
  });

  it('reads sources, destinations and targets from backupkit.config.json and backupkit.config.js', async (t) => {
    const dir = await application(t);
    await writeFile(
      join(dir, 'backupkit.config.json'),
      JSON.stringify({
        sources: [{ kind: 'sqlite', name: 'app', path: 'app.db' }, { kind: 'files', name: 'uploads', dir: 'uploads' }],
        to: ['backups'],
        compression: { algorithm: 'none' },
        targets: { app: { path: join(dir, 'from-json', 'app.db') } },
      }),
    );
    const backup = await cli(['backup'], { cwd: dir });
    assert.equal(backup.code, 0, backup.stderr);
    assert.match(records(backup.stdout).at(-1)?.['name'] as string, /\.tar$/);
    const restore = await cli(['restore'], { cwd: dir });
    assert.equal(restore.code, 0, restore.stderr);
    assert.deepEqual(records(restore.stdout).at(-1)?.['skipped'], ['uploads']);
    assert.equal(bankSummary(join(dir, 'from-json', 'app.db')).accounts, 40);

    // A JavaScript config uses the library's own factories (here imported from the build).
    const library = pathToFileURL(join(ROOT, 'dist', 'index.js')).href;
    await writeFile(
      join(dir, 'ops.config.mjs'),
      `import { directory, files } from ${JSON.stringify(library)};\n` +
        `export default () => ({ sources: [files({ name: 'uploads', dir: 'uploads' })], to: directory({ path: 'js-backups' }), retention: { keepLast: 1 } });\n`,
    );
    for (let i = 0; i < 2; i++) {
      const run = await cli(['backup', '--config', 'ops.config.mjs'], { cwd: dir });
      assert.equal(run.code, 0, run.stderr);
      if (i === 0) await new Promise((resolve) => setTimeout(resolve, 1100)); // names are to the second
    }
    assert.equal((await readdir(join(dir, 'js-backups'))).filter((f) => f.endsWith('.tar.gz')).length, 1, 'the retention policy of the config ran');
  });

  it('secrets come from the environment or a file, and never appear in any output', async (t) => {
    const dir = await application(t);
    await writeFile(join(dir, 'passphrase.txt'), `${PASSPHRASE}\n`);
    const backup = await cli(['backup', '--files', 'uploads=uploads', '--to', 'backups', '--encrypt'], { cwd: dir, env: { BACKUPKIT_PASSPHRASE: PASSPHRASE } });
    assert.equal(backup.code, 0, backup.stderr);
    assert.match(records(backup.stdout).at(-1)?.['name'] as string, /\.tar\.gz\.gpg$/);

    const withoutKey = await cli(['restore', '--from', 'backups', '--files', 'uploads=r1'], { cwd: dir });
    assert.equal(withoutKey.code, 2, 'an encrypted archive without a key is a usage error');
    const wrong = await cli(['verify', '--from', 'backups'], { cwd: dir, env: { BACKUPKIT_PASSPHRASE: 'not it' } });
    assert.equal(wrong.code, 1);
    assert.equal(records(wrong.stdout).at(-1)?.['code'], 'WRONG_KEY');
    const restore = await cli(['restore', '--from', 'backups', '--files', 'uploads=r2', '--passphrase-file', 'passphrase.txt'], { cwd: dir });
    assert.equal(restore.code, 0, restore.stderr);
    assert.equal(await readFile(join(dir, 'r2', 'notes.txt'), 'utf8'), 'notes');
    for (const run of [backup, withoutKey, wrong, restore]) {
      assert.ok(!run.stdout.includes(PASSPHRASE) && !run.stderr.includes(PASSPHRASE), 'the passphrase is never printed');
    }
    const needsPassphrase = await cli(['backup', '--files', 'uploads=uploads', '--to', 'backups', '--encrypt'], { cwd: dir });
    assert.equal(needsPassphrase.code, 2);
    assert.match(needsPassphrase.stderr, /BACKUPKIT_PASSPHRASE/);
  });

  it('exit codes: 2 for bad usage, 3 for a damaged backup; a stack trace only with --verbose', async (t) => {
    const dir = await application(t);
    assert.equal((await cli([], { cwd: dir })).code, 2);
    assert.equal((await cli(['--help'], { cwd: dir })).code, 0);
    const unknownFlag = await cli(['backup', '--sqlite', 'app=app.db', '--to', 'b', '--passphrase', 'x'], { cwd: dir });
    assert.equal(unknownFlag.code, 2, 'there is no flag that takes a secret on the command line');
    assert.match(unknownFlag.stderr, /INVALID_OPTIONS: Unknown option '--passphrase'/);
    assert.equal((await cli(['backup', '--sqlite', 'app', '--to', 'b'], { cwd: dir })).code, 2);
    assert.equal((await cli(['frobnicate'], { cwd: dir })).code, 2);
    const badUrl = await cli(['restore', '--from', 'b', '--postgres', 'pg=not a url'], { cwd: dir });
    assert.equal(badUrl.code, 2);
    assert.match(badUrl.stderr, /INVALID_OPTIONS: "not a url" is not a URL, as the target of --postgres pg must be/);
    assert.equal((await cli(['list', '--from', 's3://bad bucket'], { cwd: dir })).code, 2);
    const missing = await cli(['list', '--from', 'nowhere'], { cwd: dir });
    assert.equal(missing.code, 1, 'a mistyped folder is not "no backups"');
    assert.match(missing.stderr, /NOT_FOUND: directory .*nowhere does not exist/);
    await mkdir(join(dir, 'empty'));
    const empty = await cli(['list', '--from', 'empty', '--json'], { cwd: dir });
    assert.equal(empty.code, 0, empty.stderr);
    assert.equal(records(empty.stdout)[0]?.type, 'empty');

    const backup = await cli(['backup', '--files', 'uploads=uploads', '--to', 'backups', '--compression', 'none'], { cwd: dir });
    const archive = join(dir, 'backups', records(backup.stdout).at(-1)?.['name'] as string);
    const bytes = await readFile(archive);
    bytes[bytes.indexOf('notes\0') + 1]! ^= 0x20; // the body, padded with zeros, not the name in a header
    await writeFile(archive, bytes);
    const damaged = await cli(['verify', '--from', 'backups'], { cwd: dir });
    assert.equal(damaged.code, 3);
    assert.match(damaged.stderr, /CORRUPT_ARCHIVE: .*\n {2}- "sources\/uploads\/notes\.txt" does not match/);
    assert.doesNotMatch(damaged.stderr, /^\s+at /m);
    const verbose = await cli(['verify', '--from', 'backups', '--verbose'], { cwd: dir });
    assert.equal(verbose.code, 3);
    assert.match(verbose.stderr, /^\s+at /m);
  });

  it('prune with flags: a dry run deletes nothing, then the policy applies', async (t) => {
    const dir = await application(t);
    for (let i = 0; i < 2; i++) {
      assert.equal((await cli(['backup', '--files', 'uploads=uploads', '--to', 'backups'], { cwd: dir })).code, 0);
      if (i === 0) await new Promise((resolve) => setTimeout(resolve, 1100));
    }
    const dry = records((await cli(['prune', '--from', 'backups', '--keep-last', '1', '--dry-run'], { cwd: dir })).stdout).at(-1)!;
    assert.equal((dry['removed'] as unknown[]).length, 1);
    assert.equal((await readdir(join(dir, 'backups'))).filter((f) => f.endsWith('.tar.gz')).length, 2);
    const real = await cli(['prune', '--from', 'backups', '--keep-last', '1'], { cwd: dir });
    assert.equal(real.code, 0, real.stderr);
    assert.equal((await readdir(join(dir, 'backups'))).filter((f) => f.endsWith('.tar.gz')).length, 1);
  });

  it('on a terminal: progress bars per source with bytes, rate and ETA, then a summary', async (t) => {
    const dir = await application(t, 96 * 1024 * 1024);
    const command = `stty cols 140 rows 40; exec ${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} backup --sqlite app=app.db --files uploads=uploads --to backups`;
    const { stdout } = await execFileAsync('script', ['-qec', command, '/dev/null'], { cwd: dir, env: { PATH: process.env['PATH'], HOME: process.env['HOME'], TERM: 'xterm' } });
    const ESC = String.fromCharCode(0x1b);
    assert.match(stdout, new RegExp(`${ESC}\\[\\d+A${ESC}\\[J`), 'bars are redrawn in place');
    assert.match(stdout, /uploads files \[█*░+\] +\d+% +[\d.]+ MiB\/96\.0 MiB +[\d.]+ MiB\/s +ETA \d+s/, 'a bar with bytes, rate and ETA');
    assert.match(stdout, /app sqlite +\[█{24}\] done/);
    assert.match(stdout, /backed up \d{8}-\d{6}\.tar\.gz: [\d.]+ MiB in \d+s to directory /);
    assert.doesNotMatch(stdout, /"type":/, 'no JSON on a terminal');
  });

  it('on a terminal, with PostgreSQL whose estimate is off: no source shows more bytes than its size, and the total ends at 100 %', async (t) => {
    const dir = await application(t, 4 * 1024 * 1024);
    const database = await createDatabase(t, 'clibars');
    // Rows deleted after the insert: the pages the estimate counts are far more than the rows read.
    await sql(database, `CREATE TABLE notes (id integer PRIMARY KEY, body text);
      INSERT INTO notes SELECT i, repeat(md5(i::text), 20) FROM generate_series(1, 5000) i;
      DELETE FROM notes WHERE id % 4 <> 0; ANALYZE notes;`);
    const command = `stty cols 160 rows 40; exec ${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} backup --postgres pg=${pgUrl(database)} --sqlite app=app.db --files uploads=uploads --to backups`;
    const { stdout } = await execFileAsync('script', ['-qec', command, '/dev/null'], { cwd: dir, env: { PATH: process.env['PATH'], HOME: process.env['HOME'], TERM: 'xterm' } });
    const unit = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 } as Record<string, number>;
    const shown = [...stdout.matchAll(/ ([\d.]+) (B|KiB|MiB|GiB)\/([\d.]+) (B|KiB|MiB|GiB) /g)];
    assert.ok(shown.length > 0, 'source bars show bytes over size');
    for (const [text, done, doneUnit, total, totalUnit] of shown) {
      assert.ok(Number(done) * unit[doneUnit!]! <= Number(total) * unit[totalUnit!]!, `a source bar shows more bytes than its size: ${text}`);
    }
    const totals = [...stdout.matchAll(/total +\[[█░]+\] +(\d+)%/g)].map((m) => Number(m[1]));
    assert.equal(totals.at(-1), 100, 'the total bar ends full');
    assert.match(stdout, /pg postgres +\[█{24}\] done/);
  });

  it('SIGINT cancels a backup cleanly: exit 130, no archive, nothing partial left', async (t) => {
    const dir = await application(t, 256 * 1024 * 1024);
    const child = spawn(process.execPath, [BIN, 'backup', '--files', 'uploads=uploads', '--to', 'backups', '--compression-level', '9'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const archiving = new Promise<void>((resolve) => child.stdout.on('data', (chunk: Buffer) => chunk.toString().includes('"phase":"archive"') && resolve()));
    await archiving;
    child.kill('SIGINT');
    const [code] = (await once(child, 'exit')) as [number];
    assert.equal(code, 130, stderr);
    assert.match(stderr, /ABORTED: Interrupted by SIGINT/);
    assert.deepEqual(await readdir(join(dir, 'backups')), [], 'no archive and no temporary file');
  });

  describe('with S3 (moto_server)', () => {
    let moto: Moto;
    before(async () => (moto = await startMoto()));
    after(() => moto.stop());

    it('backs up to and restores from s3://bucket/prefix, credentials from the AWS environment', async (t) => {
      const dir = await application(t);
      const bucket = await moto.createBucket();
      const env = { AWS_ACCESS_KEY_ID: MOTO_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: MOTO_CREDENTIALS.secretAccessKey, AWS_REGION: 'us-east-1' };
      const spec = `s3://${bucket}/nightly?endpoint=${encodeURIComponent(moto.endpoint)}&path-style=true`;
      const backup = await cli(['backup', '--sqlite', 'app=app.db', '--to', spec], { cwd: dir, env });
      assert.equal(backup.code, 0, backup.stderr);
      const list = records((await cli(['list', '--from', spec], { cwd: dir, env })).stdout);
      assert.equal(list.length, 1);
      const restore = await cli(['restore', '--from', spec, '--sqlite', 'app=restored.db'], { cwd: dir, env });
      assert.equal(restore.code, 0, restore.stderr);
      assert.equal(bankSummary(join(dir, 'restored.db')).total, 1000);
      const noCredentials = await cli(['list', '--from', spec], { cwd: dir, env: { AWS_REGION: 'us-east-1', AWS_EC2_METADATA_DISABLED: 'true' } });
      assert.equal(noCredentials.code, 1);
      assert.equal(records(noCredentials.stdout).at(-1)?.['code'], 'DESTINATION_FAILED');
    });
  });
});
