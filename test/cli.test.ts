/**
 * The `backupkit` command, run as a user runs it: the built binary in a subprocess, its output
 * and exit code checked; progress bars under a real pseudo-terminal made by `script`.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { access, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { constants, hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { bankSummary, createBank } from './helpers/sqlite.js';
import { describeTree, tempDir } from './helpers/fs.js';
import { MOTO_CREDENTIALS, startMoto, type Moto } from './helpers/moto.js';
import { startAzurite, type Azurite } from './helpers/azurite.js';
import { startSshd, type Sshd } from './helpers/sshd.js';
import { startFtpd, type Ftpd } from './helpers/vsftpd.js';
import { replaceSidecar, sidecarFor } from './helpers/sidecar.js';
import { chainArchive } from './helpers/craft.js';
import { createDatabase, pgUrl, sql, uniqueName, dropDatabasesLike } from './helpers/postgres.js';
import { COMMANDS } from '../src/cli/run.js';
import { BIN, ROOT, cli, records } from './helpers/cli.js';

const execFileAsync = promisify(execFile);
const PASSPHRASE = `correct horse ${randomBytes(6).toString('hex')}`;

/** An application folder: app.db and uploads/, as the README's example has. */
async function application(t: Parameters<typeof tempDir>[0], uploadBytes = 10_000) {
  const dir = await tempDir(t, 'cli');
  createBank(join(dir, 'app.db'), 40, 25);
  await mkdir(join(dir, 'uploads', 'avatars'), { recursive: true });
  await writeFile(join(dir, 'uploads', 'avatars', 'a.png'), randomBytes(uploadBytes));
  await writeFile(join(dir, 'uploads', 'notes.txt'), 'notes');
  return dir;
}

type ProgressRecord = { type: string; phase?: string; percent?: number };

interface Interrupted {
  code: number | null;
  records: Array<{ type: string } & Record<string, unknown>>;
  stderr: string;
}

/**
 * Runs the built binary and sends it `signals` (one after the other, without waiting) as soon as
 * it prints a JSON line `when` accepts; fails the test if it finishes before that line.
 */
async function interrupt(args: readonly string[], cwd: string, when: (record: ProgressRecord) => boolean, signals: readonly NodeJS.Signals[]): Promise<Interrupted> {
  const child = spawn(process.execPath, [BIN, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let sent = false;
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    if (sent || !records(stdout.slice(0, stdout.lastIndexOf('\n') + 1)).some(when)) return;
    sent = true;
    void sendSignals(child.pid!, signals);
  });
  const [code] = (await once(child, 'exit')) as [number | null];
  assert.ok(sent, `the command ended before the point to interrupt it at: ${stdout.slice(-300)} ${stderr}`);
  return { code, records: records(stdout), stderr };
}

/**
 * Sends each signal once the one before it was delivered: the kernel merges a signal sent while the
 * same one is still pending, so two quick SIGINTs could reach the process as one.
 */
async function sendSignals(pid: number, signals: readonly NodeJS.Signals[]): Promise<void> {
  for (const signal of signals) {
    process.kill(pid, signal);
    const bit = 1n << BigInt(constants.signals[signal] - 1);
    for (;;) {
      const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => ''); // gone: delivered
      const pending = [...status.matchAll(/^(?:SigPnd|ShdPnd):\s*([0-9a-f]+)$/gm)].reduce((mask, [, hex]) => mask | BigInt(`0x${hex}`), 0n);
      if ((pending & bit) === 0n) break;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}

/** One error, reported once: the last JSON line, and `backupkit: CODE: message` and its hint on stderr. */
function assertOneErrorLine(run: Interrupted, message: RegExp): void {
  const errors = run.records.filter((r) => r.type === 'error');
  assert.equal(errors.length, 1, run.stderr);
  assert.equal(run.records.at(-1), errors[0]);
  assert.equal(errors[0]?.['code'], 'ABORTED');
  assert.match(errors[0]?.['message'] as string, message);
  assert.equal(run.stderr.match(/^backupkit: /gm)?.length, 1, run.stderr);
  assert.match(run.stderr, /(^|\n)backupkit: ABORTED: [^\n]*\n {2}hint: [^\n]+\n$/, 'the last lines on stderr'); // Node may warn above them
}

const EXIT_ON: Record<'SIGINT' | 'SIGTERM', number> = { SIGINT: 130, SIGTERM: 143 };
/** Points of a backup or restore to interrupt it at, by the JSON lines it prints. */
const POINTS: Array<{ label: string; when: (record: ProgressRecord) => boolean }> = [
  { label: 'at its first progress line', when: (r) => r.type === 'progress' },
  { label: 'once archive data flows', when: (r) => r.type === 'progress' && r.phase !== 'snapshot' && (r.percent ?? 0) > 0 },
  { label: 'a third of the way', when: (r) => r.type === 'progress' && (r.percent ?? 0) >= 33 },
];
const REPEATS = 2;

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

  it('each command has its own help: every flag it takes, an example, and where the installed docs are', async (t) => {
    const dir = await tempDir(t, 'cli-help');
    for (const [command, flags] of Object.entries(COMMANDS)) {
      for (const asked of [[command, '--help'], ['help', command], [command, '--no-such-flag', '-h']]) {
        const help = await cli(asked, { cwd: dir });
        assert.equal(help.code, 0, `${asked.join(' ')}: ${help.stderr}`);
        assert.match(help.stdout, new RegExp(`^Usage: backupkit ${command} `), asked.join(' '));
        for (const flag of Object.keys(flags)) assert.match(help.stdout, new RegExp(`^\\s+(-h, )?--${flag}\\b`, 'm'), `${command} --help lists --${flag}`);
        assert.match(help.stdout, new RegExp(`\nExample:\n {2}(\\S+=\\S+ )?backupkit ${command} `), `${command} --help has an example`);
        const docs = /^Documentation: (.+)$/m.exec(help.stdout)?.[1];
        assert.ok(docs !== undefined, `${command} --help says where the docs are`);
        await access(docs);
      }
    }
    const overview = await cli(['--help'], { cwd: dir });
    assert.match(overview.stdout, /`backupkit <command> --help` lists every option/);
    await access(/^Documentation: (.+)$/m.exec(overview.stdout)![1]!);
  });

  it('--jobs sets the parallel connections of PostgreSQL sources and targets', async (t) => {
    const dir = await tempDir(t, 'cli-jobs');
    const database = await createDatabase(t, 'cli_jobs');
    await sql(database, 'CREATE TABLE a (n int); CREATE TABLE b (n int); CREATE TABLE c (n int); INSERT INTO a SELECT generate_series(1, 300); INSERT INTO b VALUES (1); INSERT INTO c VALUES (2)');
    const backup = await cli(['backup', '--postgres', `pg=${pgUrl(database)}`, '--jobs', '3', '--to', 'backups'], { cwd: dir });
    assert.equal(backup.code, 0, backup.stderr);
    const restoredName = uniqueName('cli_jobs_restored');
    t.after(() => dropDatabasesLike(restoredName));
    const restore = await cli(['restore', '--from', 'backups', '--postgres', `pg=${pgUrl(restoredName)}`, '--jobs', '3'], { cwd: dir });
    assert.equal(restore.code, 0, restore.stderr);
    assert.deepEqual(await sql(restoredName, 'SELECT (SELECT sum(n) FROM a)::int AS a, (SELECT sum(n) FROM b)::int AS b, (SELECT sum(n) FROM c)::int AS c'), [{ a: 45150, b: 1, c: 2 }]);

    const none = await cli(['backup', '--postgres', `pg=${pgUrl(database)}`, '--jobs', '0', '--to', 'backups'], { cwd: dir });
    assert.equal(none.code, 2);
    assert.match(none.stderr, /INVALID_OPTIONS: --jobs takes a whole number of 1 or more, not "0"/);
    const withoutPostgres = await cli(['backup', '--sqlite', 'app=app.db', '--jobs', '2', '--to', 'backups'], { cwd: dir });
    assert.equal(withoutPostgres.code, 2, '--jobs without --postgres is a mistake, not ignored');
    assert.match(withoutPostgres.stderr, /give it with --postgres/);
  });

  it('relative paths in a config file, JavaScript or JSON, are relative to the config file', async (t) => {
    const dir = await application(t);
    await mkdir(join(dir, 'ops', 'js'), { recursive: true });
    const library = pathToFileURL(join(ROOT, 'dist', 'index.js')).href;
    await writeFile(
      join(dir, 'ops', 'js', 'backupkit.config.mjs'),
      `import { directory, files, sqlite } from ${JSON.stringify(library)};\n` +
        `export default { sources: [sqlite({ name: 'app', path: '../../app.db' }), files({ name: 'uploads', dir: '../../uploads' })], to: directory({ path: 'backups' }),\n` +
        `  targets: { app: { path: 'restored/app.db' }, uploads: { dir: 'restored/uploads' } } };\n`,
    );
    await writeFile(
      join(dir, 'ops', 'backupkit.config.json'),
      JSON.stringify({
        sources: [{ kind: 'files', name: 'uploads', dir: '../uploads' }],
        to: 'json-backups',
        targets: { uploads: { dir: 'json-restored' } },
        scratch: { dir: 'scratch' },
      }),
    );
    await mkdir(join(dir, 'ops', 'scratch'));
    // Run from the application folder, as cron would from anywhere: the config file's folder counts, not this one.
    for (const config of ['ops/js/backupkit.config.mjs', 'ops/backupkit.config.json']) {
      for (const command of ['backup', 'restore', 'verify']) {
        const run = await cli([command, '--config', config, ...(command === 'verify' ? ['--level', 'restore'] : [])], { cwd: dir });
        assert.equal(run.code, 0, `${command} --config ${config}: ${run.stderr}`);
      }
    }
    assert.equal((await readdir(join(dir, 'ops', 'js', 'backups'))).filter((f) => f.endsWith('.tar.gz')).length, 1);
    assert.equal(bankSummary(join(dir, 'ops', 'js', 'restored', 'app.db')).total, 1000);
    assert.deepEqual(await describeTree(join(dir, 'ops', 'js', 'restored', 'uploads')), await describeTree(join(dir, 'uploads')));
    assert.equal((await readdir(join(dir, 'ops', 'json-backups'))).filter((f) => f.endsWith('.tar.gz')).length, 1);
    assert.deepEqual(await describeTree(join(dir, 'ops', 'json-restored')), await describeTree(join(dir, 'uploads')));
  });

  it('secrets come from the environment or a file, and never appear in any output', async (t) => {
    const dir = await application(t);
    await writeFile(join(dir, 'passphrase.txt'), `${PASSPHRASE}\n`);
    const backup = await cli(['backup', '--files', 'uploads=uploads', '--to', 'backups', '--encrypt'], { cwd: dir, env: { BACKUPKIT_PASSPHRASE: PASSPHRASE } });
    assert.equal(backup.code, 0, backup.stderr);
    assert.match(records(backup.stdout).at(-1)?.['name'] as string, /\.tar\.gz\.gpg$/);

    const withoutKey = await cli(['restore', '--from', 'backups', '--files', 'uploads=r1'], { cwd: dir });
    assert.equal(withoutKey.code, 2, 'an encrypted archive without a key is a usage error');
    // The hints name the flags and variables a CLI user has, not the library's options.
    assert.match(withoutKey.stderr, /hint: .*BACKUPKIT_PASSPHRASE or --passphrase-file.*--private-key-file/);
    assert.doesNotMatch(withoutKey.stderr, /decrypt/);
    const wrong = await cli(['verify', '--from', 'backups'], { cwd: dir, env: { BACKUPKIT_PASSPHRASE: 'not it' } });
    assert.equal(wrong.code, 1);
    assert.equal(records(wrong.stdout).at(-1)?.['code'], 'WRONG_KEY');
    assert.match(records(wrong.stdout).at(-1)?.['hint'] as string, /BACKUPKIT_PASSPHRASE or --passphrase-file/);
    assert.doesNotMatch(wrong.stderr, /`decrypt`/);
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
    assert.match(missing.stderr, /NOT_FOUND: directory .*nowhere does not exist\n {2}hint: Check the path; a backup creates the folder\./);
    await mkdir(join(dir, 'empty'));
    const empty = await cli(['list', '--from', 'empty', '--json'], { cwd: dir });
    assert.equal(empty.code, 0, empty.stderr);
    assert.equal(records(empty.stdout)[0]?.type, 'empty');
    const notFound = await cli(['restore', '--from', 'empty', '--sqlite', 'app=r.db'], { cwd: dir });
    assert.equal(notFound.code, 1);
    assert.match(notFound.stderr, /NOT_FOUND: .*\n {2}hint: Check --from and --backup: `backupkit list --from <dest>`/);
    assert.doesNotMatch(notFound.stderr, /listBackups/);
    const usageHint = await cli(['prune', '--from', 'nowhere'], { cwd: dir });
    assert.match(usageHint.stderr, /hint: Run `backupkit prune --help`/);

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
    const bareNumber = await cli(['prune', '--from', 'backups', '--max-age', '30'], { cwd: dir });
    assert.equal(bareNumber.code, 2, 'a number without a unit is refused, not taken as milliseconds');
    assert.match(bareNumber.stderr, /INVALID_OPTIONS: --max-age takes hours, days or weeks, as 36h, 30d or 8w, not "30"/);
    assert.doesNotMatch(bareNumber.stderr, /milliseconds/);
    const real = await cli(['prune', '--from', 'backups', '--keep-last', '1'], { cwd: dir });
    assert.equal(real.code, 0, real.stderr);
    assert.equal((await readdir(join(dir, 'backups'))).filter((f) => f.endsWith('.tar.gz')).length, 1);
  });

  it('list and prune: backups whose sidecar cannot be trusted are listed with their problem and never pruned; prune sweeps dead temporaries', async (t) => {
    const dir = await tempDir(t, 'cli-untrusted');
    const backups = join(dir, 'backups');
    await mkdir(backups);
    const now = Date.now();
    const stamp = (hoursAgo: number) => new Date(now - hoursAgo * 3_600_000).toISOString().slice(0, 19).replace(/[-:]/g, '').replace('T', '-');
    const [fresh, noList, ancient, old] = [`${stamp(1)}.tar.gz`, `${stamp(2)}.tar.gz`, `${stamp(3)}.tar.gz`, `${stamp(24 * 60)}.tar.gz`];
    // Real archives: prune reads an unknown one's header to see that it is a full, which needs no older backup.
    const archives = new Map<string, Buffer>();
    for (const name of [fresh, noList, ancient, old]) {
      archives.set(name, await chainArchive(name));
      await writeFile(join(backups, name), archives.get(name) as Buffer);
      await writeFile(join(backups, `${name}.json`), JSON.stringify(sidecarFor(name, archives.get(name) as Buffer)));
    }
    await replaceSidecar(backups, noList, JSON.stringify(sidecarFor(noList, archives.get(noList) as Buffer, { sourceStats: 'app' })));
    await replaceSidecar(backups, ancient, JSON.stringify(sidecarFor(ancient, archives.get(ancient) as Buffer, { createdAt: '1999-01-01T00:00:00.000Z' })));
    const { stdout: deadPid } = await execFileAsync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
    const dead = `.${fresh}.${hostname().replace(/[^A-Za-z0-9-]/g, '-').slice(0, 63)}_${deadPid}_0123456789ab.partial`;
    await writeFile(join(backups, dead), 'half an archive');

    const list = await cli(['list', '--from', 'backups'], { cwd: dir });
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual(
      records(list.stdout).map((r) => [r['name'], r['trust'], (r['problem'] as { code?: string } | undefined)?.code]),
      [[fresh, 'trusted', undefined], [noList, 'unknown', 'SIDECAR_INVALID'], [ancient, 'unknown', 'SIDECAR_MISMATCH'], [old, 'trusted', undefined]],
    );
    const command = `stty cols 200 rows 40; exec ${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} list --from backups`;
    const { stdout: onTerminal } = await execFileAsync('script', ['-qec', command, '/dev/null'], { cwd: dir, env: { PATH: process.env['PATH'], HOME: process.env['HOME'], TERM: 'xterm' } });
    assert.match(onTerminal, new RegExp(`${noList.replace(/\./g, '\\.')} .*\r?\n  unknown \\(SIDECAR_INVALID\\): its sidecar's sourceStats is not a list; never deleted by prune`));
    assert.match(onTerminal, /unknown \(SIDECAR_MISMATCH\): its sidecar says it was made at 1999-01-01T00:00:00\.000Z/);

    const dry = await cli(['prune', '--from', 'backups', '--max-age', '30d', '--dry-run'], { cwd: dir });
    assert.equal(dry.code, 0, dry.stderr);
    const planned = records(dry.stdout).at(-1)!;
    assert.deepEqual((planned['removed'] as Array<{ name: string }>).map((b) => b.name), [old]);
    assert.deepEqual((planned['kept'] as Array<{ name: string; reasons: string[] }>).map((b) => [b.name, b.reasons]), [[fresh, ['newest', 'maxAge']], [noList, ['unknown']], [ancient, ['unknown']]]);
    assert.deepEqual(planned['leftovers'], [dead]);
    assert.equal((await readdir(backups)).length, 9, 'a dry run deletes nothing');

    const real = await cli(['prune', '--from', 'backups', '--max-age', '30d'], { cwd: dir });
    assert.equal(real.code, 0, real.stderr);
    assert.deepEqual((await readdir(backups)).sort(), [fresh, `${fresh}.json`, noList, `${noList}.json`, ancient, `${ancient}.json`].sort());
  });

  it('prune keeps back to the full what an encrypted unknown backup may build on, and says so', async (t) => {
    const dir = await tempDir(t, 'cli-unknown-chain');
    const backups = join(dir, 'backups');
    await mkdir(backups);
    const [full, encrypted, newest] = ['20261101-000000.tar.gz', '20261102-000000.tar.gz.gpg', '20261103-000000.tar.gz'];
    for (const name of [full, newest]) {
      const bytes = await chainArchive(name);
      await writeFile(join(backups, name), bytes);
      await writeFile(join(backups, `${name}.json`), JSON.stringify(sidecarFor(name, bytes)));
    }
    await writeFile(join(backups, encrypted), randomBytes(1000)); // no sidecar: a backup killed before it wrote one
    const dry = await cli(['prune', '--from', 'backups', '--keep-last', '1', '--dry-run'], { cwd: dir });
    assert.equal(dry.code, 0, dry.stderr);
    const planned = records(dry.stdout).at(-1)!;
    assert.deepEqual((planned['kept'] as Array<{ name: string; reasons: string[] }>).map((b) => [b.name, b.reasons]), [[newest, ['newest', 'last']], [encrypted, ['unknown']], [full, ['unknown-chain']]]);
    assert.deepEqual((planned['warnings'] as Array<{ code: string; backup: string; kept: string[] }>).map((w) => [w.code, w.backup, w.kept]), [['UNKNOWN_CHAIN', encrypted, [full]]]);
    const command = `stty cols 200 rows 40; exec ${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} prune --from backups --keep-last 1`;
    const { stdout } = await execFileAsync('script', ['-qec', command, '/dev/null'], { cwd: dir, env: { PATH: process.env['PATH'], HOME: process.env['HOME'], TERM: 'xterm' } });
    assert.match(stdout, new RegExp(`warning: ${encrypted.replace(/\./g, '\\.')} is unknown and it is encrypted, and its header is inside the encryption, so what it builds on is unknown: kept the full before it, ${full.replace(/\./g, '\\.')}`));
    assert.deepEqual((await readdir(backups)).sort(), [encrypted, full, `${full}.json`, newest, `${newest}.json`].sort());
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

  it('on a terminal: counts agree with their nouns, and prune prints aligned columns', async (t) => {
    const dir = await application(t);
    const onTerminal = async (args: string) => {
      const command = `stty cols 200 rows 40; exec ${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} ${args}`;
      const { stdout } = await execFileAsync('script', ['-qec', command, '/dev/null'], { cwd: dir, env: { PATH: process.env['PATH'], HOME: process.env['HOME'], TERM: 'xterm' } });
      return stdout.replace(/\r/g, '');
    };
    const first = await onTerminal('backup --sqlite app=app.db --to backups');
    assert.match(first, /^ {2}app \(sqlite\): [\d.]+ KiB, 1 item$/m);
    assert.match(first, /done {2}[\d.]+ KiB in 1 item$/m, 'the source bar too');
    assert.doesNotMatch(first, /\b1 items\b/);
    await new Promise((resolve) => setTimeout(resolve, 1100)); // names are to the second
    await onTerminal('backup --sqlite app=app.db --to backups');
    const pruned = (await onTerminal('prune --from backups --keep-last 1 --dry-run')).trimEnd().split('\n');
    assert.equal(pruned.length, 3, pruned.join('\n'));
    assert.match(pruned[0]!, /^keep {2}\d{8}-\d{6}\.tar\.gz {2}\(newest, last\)$/);
    assert.match(pruned[1]!, /^drop {2}\d{8}-\d{6}\.tar\.gz$/);
    assert.equal(pruned[2], 'would delete 1 backup and 0 leftovers, kept 1');
    const deleted = (await onTerminal('prune --from backups --keep-last 1')).trimEnd().split('\n');
    assert.deepEqual(deleted.map((line) => line.search(/\d{8}-/)), [9, 9, -1], 'the names start in one column');
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


  describe('interrupted by SIGINT or SIGTERM', () => {
    let dir: string;
    let archive: string;
    let runs = 0;
    const cleanUp: Array<() => Promise<void>> = [];
    after(() => Promise.all(cleanUp.map((clean) => clean())));
    before(async () => {
      dir = await application({ after: (clean: () => Promise<void>) => cleanUp.push(clean) }, 128 * 1024 * 1024);
      const backup = await cli(['backup', '--sqlite', 'app=app.db', '--files', 'uploads=uploads', '--to', 'full'], { cwd: dir });
      assert.equal(backup.code, 0, backup.stderr);
      archive = records(backup.stdout).at(-1)?.['name'] as string;
    });

    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      for (const { label, when } of POINTS) {
        it(`${signal} ${label} cancels a backup: exit ${EXIT_ON[signal]}, one error line, nothing left in the destination (${REPEATS} runs)`, async () => {
          for (let i = 0; i < REPEATS; i++) {
            const to = `b${++runs}`;
            const run = await interrupt(['backup', '--sqlite', 'app=app.db', '--files', 'uploads=uploads', '--to', to], dir, when, [signal]);
            assert.equal(run.code, EXIT_ON[signal], run.stderr);
            assertOneErrorLine(run, new RegExp(`^Interrupted by ${signal}$`));
            assert.deepEqual(await readdir(join(dir, to)), [], 'no archive, sidecar, claim or hidden .partial');
          }
        });
      }
    }

    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      for (const { label, when } of POINTS.slice(0, 2)) {
        it(`${signal} ${label} cancels a restore: exit ${EXIT_ON[signal]}, one error line, targets left absent (${REPEATS} runs)`, async () => {
          for (let i = 0; i < REPEATS; i++) {
            const into = `r${++runs}`;
            await mkdir(join(dir, into));
            const args = ['restore', '--from', 'full', '--backup', archive, '--sqlite', `app=${into}/app.db`, '--files', `uploads=${into}/uploads`];
            const run = await interrupt(args, dir, when, [signal]);
            assert.equal(run.code, EXIT_ON[signal], run.stderr);
            assertOneErrorLine(run, new RegExp(`^Interrupted by ${signal}$`));
            assert.deepEqual(await readdir(join(dir, into)), [], 'no target, staging copy or journal');
          }
        });
      }
    }

    it('a second signal while cancelling still lets the clean-up finish: nothing left, one error line', async () => {
      for (const signals of [['SIGINT', 'SIGINT'], ['SIGTERM', 'SIGINT']] as const) {
        const to = `b${++runs}`;
        const run = await interrupt(['backup', '--files', 'uploads=uploads', '--to', to], dir, POINTS[1]!.when, signals);
        assert.equal(run.code, EXIT_ON[signals[0]], run.stderr);
        assertOneErrorLine(run, new RegExp(`^Interrupted by ${signals[0]}$`));
        assert.deepEqual(await readdir(join(dir, to)), [], 'no archive, sidecar, claim or hidden .partial');

        const into = `r${++runs}`;
        await mkdir(join(dir, into));
        const restore = await interrupt(['restore', '--from', 'full', '--files', `uploads=${into}/uploads`], dir, POINTS[0]!.when, signals);
        assert.equal(restore.code, EXIT_ON[signals[0]], restore.stderr);
        assertOneErrorLine(restore, new RegExp(`^Interrupted by ${signals[0]}$`));
        assert.deepEqual(await readdir(join(dir, into)), []);
      }
    });
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

    it('backs up to and restores from gs://bucket/prefix (GCS\'s XML API; moto here), the HMAC key from BACKUPKIT_GCS_HMAC_*', async (t) => {
      const dir = await application(t);
      const bucket = await moto.createBucket();
      const env = { BACKUPKIT_GCS_HMAC_ACCESS_ID: MOTO_CREDENTIALS.accessKeyId, BACKUPKIT_GCS_HMAC_SECRET: MOTO_CREDENTIALS.secretAccessKey };
      const spec = `gs://${bucket}/nightly?endpoint=${encodeURIComponent(moto.endpoint)}`;
      const backup = await cli(['backup', '--json', '--sqlite', 'app=app.db', '--to', spec], { cwd: dir, env });
      assert.equal(backup.code, 0, backup.stderr);
      assert.deepEqual(records(backup.stdout).at(-1)?.['destinations'], [`gs://${bucket}/nightly/`]);
      const list = records((await cli(['list', '--from', spec], { cwd: dir, env })).stdout);
      assert.equal(list.length, 1);
      const restore = await cli(['restore', '--from', spec, '--sqlite', 'app=restored.db'], { cwd: dir, env });
      assert.equal(restore.code, 0, restore.stderr);
      assert.equal(bankSummary(join(dir, 'restored.db')).total, 1000);
      const noKey = await cli(['list', '--from', spec], { cwd: dir });
      assert.equal(noKey.code, 2, 'no HMAC key: a usage error');
      assert.match(noKey.stderr, /BACKUPKIT_GCS_HMAC_ACCESS_ID/);
    });

    it('a second signal does not wait for a frozen server: the command exits 5 s later with one error line saying what may be left', async (t) => {
      const dir = await application(t, 64 * 1024 * 1024);
      const bucket = await moto.createBucket();
      const env = { AWS_ACCESS_KEY_ID: MOTO_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: MOTO_CREDENTIALS.secretAccessKey, AWS_REGION: 'us-east-1' };
      const spec = `s3://${bucket}/nightly?endpoint=${encodeURIComponent(moto.endpoint)}&path-style=true`;
      const child = spawn(process.execPath, [BIN, 'backup', '--files', 'uploads=uploads', '--to', spec], { cwd: dir, env: { PATH: process.env['PATH'], HOME: process.env['HOME'], ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const flowing = new Promise<void>((resolve) =>
        child.stdout.on('data', (chunk: Buffer) => {
          stdout += chunk.toString();
          if (/"phase":"archive"/.test(stdout)) resolve();
        }),
      );
      await flowing;
      // Frozen, the server keeps its connections open and answers nothing: aborting the upload waits
      // for the S3 client's socket timeout (120 s).
      moto.freeze();
      try {
        const exited = once(child, 'exit');
        await sendSignals(child.pid!, ['SIGINT', 'SIGINT']);
        const [code] = (await exited) as [number | null];
        const run = { code, records: records(stdout), stderr };
        assert.equal(run.code, 130, stderr);
        assertOneErrorLine(run, /^Interrupted by SIGINT; the clean-up did not finish within 5 s of the second signal$/);
        assert.match(run.stderr, /hint: Clean-up was cut short\. .*the next backup removes the temporary and the upload/);
      } finally {
        moto.thaw();
      }
    });
  });

  describe('with Azure Blob (Azurite)', () => {
    let azurite: Azurite;
    before(async () => (azurite = await startAzurite()));
    after(() => azurite.stop());

    it('backs up to and lists azure://container/prefix, the connection string from AZURE_STORAGE_CONNECTION_STRING', async (t) => {
      const dir = await application(t);
      const spec = `azure://${await azurite.createContainer()}/nightly`;
      const env = { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString() };
      const backup = await cli(['backup', '--sqlite', 'app=app.db', '--to', spec], { cwd: dir, env });
      assert.equal(backup.code, 0, backup.stderr);
      const list = records((await cli(['list', '--from', spec], { cwd: dir, env })).stdout);
      assert.deepEqual(list.map((r) => [r.type, r['name']]), [['backup', records(backup.stdout).at(-1)?.['name']]]);
      const restore = await cli(['restore', '--from', spec, '--sqlite', 'app=restored.db'], { cwd: dir, env });
      assert.equal(restore.code, 0, restore.stderr);
      assert.equal(bankSummary(join(dir, 'restored.db')).total, 1000);
      const noConnection = await cli(['list', '--from', spec], { cwd: dir });
      assert.equal(noConnection.code, 2);
      assert.match(noConnection.stderr + noConnection.stdout, /AZURE_STORAGE_CONNECTION_STRING/);
    });
  });

  describe('with SFTP (sshd)', () => {
    let sshd: Sshd;
    before(async () => (sshd = await startSshd()));
    after(() => sshd.stop());

    it('backs up to and lists sftp://user@host:port/path with a key file and a known_hosts file', async (t) => {
      const dir = await application(t);
      await writeFile(join(dir, 'id_backup'), sshd.privateKey, { mode: 0o600 });
      const spec = `sftp://${sshd.username}@${sshd.host}:${sshd.port}${await sshd.folder()}?key=id_backup&known-hosts=${encodeURIComponent(sshd.knownHosts)}`;
      const backup = await cli(['backup', '--sqlite', 'app=app.db', '--to', spec], { cwd: dir });
      assert.equal(backup.code, 0, backup.stderr);
      const list = records((await cli(['list', '--from', spec], { cwd: dir })).stdout);
      assert.deepEqual(list.map((r) => [r.type, r['name']]), [['backup', records(backup.stdout).at(-1)?.['name']]]);
      const restore = await cli(['restore', '--from', spec, '--sqlite', 'app=restored.db'], { cwd: dir });
      assert.equal(restore.code, 0, restore.stderr);
      assert.equal(bankSummary(join(dir, 'restored.db')).total, 1000);
    });
  });

  describe('with FTPS (vsftpd)', () => {
    let ftpd: Ftpd;
    before(async () => (ftpd = await startFtpd()));
    after(() => ftpd.stop());

    it('backs up to, lists and restores from ftps://user@host:port/path?ca=file, the password from BACKUPKIT_FTP_PASSWORD', async (t) => {
      const dir = await application(t);
      await writeFile(join(dir, 'server.pem'), ftpd.certificate);
      const spec = `ftps://${ftpd.user}@${ftpd.host}:${ftpd.port}${await ftpd.folder()}?ca=server.pem`;
      const env = { BACKUPKIT_FTP_PASSWORD: ftpd.password };
      const refused = await cli(['list', '--from', spec], { cwd: dir });
      assert.equal(refused.code, 2, 'no password: a usage error');
      assert.match(refused.stderr, /BACKUPKIT_FTP_PASSWORD/);
      const backup = await cli(['backup', '--sqlite', 'app=app.db', '--to', spec], { cwd: dir, env });
      assert.equal(backup.code, 0, backup.stderr);
      const list = records((await cli(['list', '--from', spec], { cwd: dir, env })).stdout);
      assert.deepEqual(list.map((r) => [r.type, r['name']]), [['backup', records(backup.stdout).at(-1)?.['name']]]);
      const restore = await cli(['restore', '--from', spec, '--sqlite', 'app=restored.db'], { cwd: dir, env });
      assert.equal(restore.code, 0, restore.stderr);
      assert.equal(bankSummary(join(dir, 'restored.db')).total, 1000);
      assert.ok(![backup, restore].some((run) => `${run.stdout}${run.stderr}`.includes(ftpd.password)), 'the password is never echoed');
    });
  });
});
