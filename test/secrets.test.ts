/**
 * No secret ever leaves backupkit: a backup, a restore and a verification with a PostgreSQL URL
 * holding a password, an S3 secret key, an encryption passphrase and a signing key with its own
 * passphrase, through the API and the command line (`--json`), successful and failing. Every
 * result, event payload, error (message, hint, stack, cause chain, JSON), object stored on the
 * destinations (sidecars, claims, the archive and its header) and every line printed is searched
 * for every secret. Azure account keys and SSH keys and passwords too.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { inspect, promisify } from 'node:util';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import * as openpgp from 'openpgp';
import { azure, BackupError, Database, directory, listBackups, postgres, prune, s3, sftp, sqlite, verifyBackup, type Destination } from '../src/index.js';
import { startAzurite } from './helpers/azurite.js';
import { tempDir } from './helpers/fs.js';
import { startMoto, type Moto } from './helpers/moto.js';
import { startSshd } from './helpers/sshd.js';
import { createDatabase, PG_HOST, PG_PORT, PG_USER, sql, uniqueName, dropDatabasesLike } from './helpers/postgres.js';
import { createBank } from './helpers/sqlite.js';

const execFileAsync = promisify(execFile);
const BIN = join(import.meta.dirname, '..', '..', 'dist', 'cli', 'main.js');

const PG_PASSWORD = `pg-pw-${randomBytes(6).toString('hex')}`;
const S3_SECRET = `s3-secret-${randomBytes(6).toString('hex')}`;
const PASSPHRASE = `encryption-passphrase-${randomBytes(6).toString('hex')}`;
const SIGN_PASSPHRASE = `signing-key-passphrase-${randomBytes(6).toString('hex')}`;

/** The server accepts any password (trust authentication): a password in the URL is carried, never checked. */
function pgUrlWithPassword(database: string, port = PG_PORT): string {
  return `postgres://${PG_USER}:${PG_PASSWORD}@${PG_HOST}:${port}/${encodeURIComponent(database)}`;
}

interface Secrets {
  readonly names: Record<string, string>;
}

/** Every secret, and for the private key each line of its armored body: any of them found is a leak. */
async function secrets(): Promise<Secrets & { privateKey: string; publicKey: string }> {
  const { privateKey, publicKey } = await openpgp.generateKey({
    type: 'ecc',
    curve: 'curve25519Legacy',
    userIDs: [{ name: 'Signer', email: 'signer@example.com' }],
    passphrase: SIGN_PASSPHRASE,
    format: 'armored',
  });
  const publicLines = new Set(publicKey.split('\n'));
  const keyLines = privateKey.split('\n').filter((line) => line.length >= 40 && !publicLines.has(line));
  assert.ok(keyLines.length > 0);
  const names: Record<string, string> = { PG_PASSWORD, S3_SECRET, PASSPHRASE, SIGN_PASSPHRASE };
  for (const [i, line] of keyLines.entries()) names[`private key line ${i}`] = line;
  return { names, privateKey, publicKey };
}

function assertNoSecret(secretsFound: Secrets, text: string, where: string): void {
  for (const [name, secret] of Object.entries(secretsFound.names)) {
    assert.ok(!text.includes(secret), `${where} holds ${name}:\n${text.slice(Math.max(0, text.indexOf(secret) - 300), text.indexOf(secret) + 100)}`);
  }
}

/** Everything an error carries, down its cause chain. */
function describeError(error: unknown): string {
  const parts: string[] = [JSON.stringify(error), inspect(error, { depth: 8 })];
  for (let cause: unknown = error; cause instanceof Error; cause = cause.cause) {
    parts.push(cause.message, cause.stack ?? '', JSON.stringify(cause), cause instanceof BackupError ? cause.hint : '');
  }
  return parts.join('\n');
}

/** Every event an operation emits, serialized as a listener would log it. */
function recordEvents(operation: object): string[] {
  const on = operation as { on(event: string, listener: (value: unknown) => void): unknown };
  const seen: string[] = [];
  for (const event of ['start', 'source-start', 'progress', 'source-end', 'warning', 'end', 'error'] as const) {
    on.on(event, (value: unknown) => seen.push(`${event} ${JSON.stringify(value)} ${inspect(value, { depth: 8 })}`));
  }
  return seen;
}

async function failure(promise: PromiseLike<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof BackupError, String(error));
    return error;
  }
  assert.fail('expected a failure');
}

/** Every object on a folder destination, raw. */
async function folderContents(dir: string): Promise<string> {
  const names = await readdir(dir);
  return (await Promise.all(names.map(async (name) => `${name}\n${(await readFile(join(dir, name))).toString('latin1')}`))).join('\n');
}

async function bucketContents(moto: Moto, bucket: string): Promise<string> {
  const listed = await moto.client.send(new ListObjectsV2Command({ Bucket: bucket }));
  const out: string[] = [];
  for (const { Key } of listed.Contents ?? []) {
    const object = await moto.client.send(new GetObjectCommand({ Bucket: bucket, Key }));
    out.push(`${Key}\n${Buffer.from(await object.Body!.transformToByteArray()).toString('latin1')}`);
  }
  assert.ok(out.length >= 2, 'the archive and its sidecar are on the bucket');
  return out.join('\n');
}

async function cli(args: readonly string[], cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [BIN, ...args], { cwd, env: { PATH: process.env['PATH'], HOME: process.env['HOME'], ...env }, maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

describe('secrets are never echoed', () => {
  let moto: Moto;
  before(async () => (moto = await startMoto()));
  after(() => moto.stop());

  it('through the API: results, events, errors and stored objects of a backup, a restore and a verification', async (t) => {
    const keys = await secrets();
    const dir = await tempDir(t, 'secrets');
    createBank(join(dir, 'app.db'), 20, 10);
    const database = await createDatabase(t, 'secrets');
    await sql(database, 'CREATE TABLE t (id integer PRIMARY KEY, v text); INSERT INTO t SELECT i, md5(i::text) FROM generate_series(1, 500) i;');
    const bucket = await moto.createBucket();
    const bucketDestination = (endpoint = moto.endpoint): Destination =>
      s3({ bucket, endpoint, forcePathStyle: true, credentials: { accessKeyId: 'backupkit', secretAccessKey: S3_SECRET }, maxAttempts: 1 });
    const folder = join(dir, 'backups');
    const sources = [postgres({ name: 'pg', connection: pgUrlWithPassword(database) }), sqlite({ name: 'app', path: join(dir, 'app.db') })];
    const seen: string[] = [];

    const backup = new Database({ sources }).startBackup({
      to: [directory({ path: folder }), bucketDestination()],
      encrypt: { passphrase: PASSPHRASE },
      sign: { privateKey: keys.privateKey, passphrase: SIGN_PASSPHRASE },
    });
    seen.push(...recordEvents(backup));
    const backupResult = await backup.done;
    seen.push(JSON.stringify(backupResult), inspect(backupResult, { depth: 8 }));

    const restoredName = `${database}_restored`;
    const pgTarget = { connection: pgUrlWithPassword('postgres'), database: restoredName };
    const restore = Database.restore({ from: bucketDestination(), targets: { pg: pgTarget, app: { path: join(dir, 'restored.db') } }, decrypt: { passphrase: PASSPHRASE } });
    seen.push(...recordEvents(restore));
    const restoreResult = await restore;
    seen.push(JSON.stringify(restoreResult), inspect(restoreResult, { depth: 8 }));
    assert.equal(restoreResult.sources.length, 2);

    const verify = verifyBackup({ from: directory({ path: folder }), level: 'restore', decrypt: { passphrase: PASSPHRASE }, scratch: { dir, postgres: pgUrlWithPassword('postgres') } });
    seen.push(...recordEvents(verify));
    const verifyResult = await verify;
    seen.push(JSON.stringify(verifyResult), inspect(verifyResult, { depth: 8 }));

    // Failures that quote what they were given: a taken target, unreachable servers, a wrong key.
    const errors = [
      await failure(Database.restore({ from: bucketDestination(), targets: { pg: pgTarget }, decrypt: { passphrase: PASSPHRASE } })),
      await failure(new Database({ sources: [postgres({ name: 'pg', connection: pgUrlWithPassword(database, 1) })] }).startBackup({ to: directory({ path: folder }) }).done),
      await failure(Database.restore({ from: directory({ path: folder }), targets: { pg: { connection: pgUrlWithPassword('postgres', 1), database: uniqueName('x') } }, decrypt: { passphrase: PASSPHRASE } })),
      await failure(verifyBackup({ from: directory({ path: folder }), level: 'restore', decrypt: { passphrase: PASSPHRASE }, scratch: { dir, postgres: pgUrlWithPassword('postgres', 1) } })),
      await failure(new Database({ sources }).startBackup({ to: bucketDestination('http://127.0.0.1:1'), encrypt: { passphrase: PASSPHRASE } }).done),
      await failure(Database.restore({ from: directory({ path: folder }), targets: { app: { path: join(dir, 'other.db') } }, decrypt: { passphrase: `${PASSPHRASE}-wrong` } })),
    ];
    t.after(() => dropDatabasesLike(restoredName));
    for (const error of errors) seen.push(describeError(error));

    assertNoSecret(keys, seen.join('\n'), 'an event, result or error');
    assertNoSecret(keys, await folderContents(folder), 'the folder destination');
    assertNoSecret(keys, await bucketContents(moto, bucket), 'the bucket');
  });

  it('through the command line with --json: stdout and stderr of every command, successful or failing', async (t) => {
    const keys = await secrets();
    const dir = await tempDir(t, 'secrets-cli');
    createBank(join(dir, 'app.db'), 20, 10);
    await writeFile(join(dir, 'sign.asc'), keys.privateKey);
    await writeFile(join(dir, 'verify.asc'), keys.publicKey);
    const database = await createDatabase(t, 'secretscli');
    await sql(database, 'CREATE TABLE t (id integer PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100);');
    const restoredName = `${database}_restored`;
    t.after(() => dropDatabasesLike(restoredName));
    const bucket = await moto.createBucket();
    const spec = `s3://${bucket}/nightly?endpoint=${encodeURIComponent(moto.endpoint)}&path-style=true`;
    const env = {
      AWS_ACCESS_KEY_ID: 'backupkit',
      AWS_SECRET_ACCESS_KEY: S3_SECRET,
      AWS_REGION: 'us-east-1',
      BACKUPKIT_PASSPHRASE: PASSPHRASE,
      BACKUPKIT_SIGN_KEY_PASSPHRASE: SIGN_PASSPHRASE,
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    };
    const runs = [
      await cli(['backup', '--json', '--postgres', `pg=${pgUrlWithPassword(database)}`, '--sqlite', 'app=app.db', '--to', spec, '--to', 'backups', '--encrypt', '--sign-key-file', 'sign.asc'], dir, env),
      await cli(['list', '--json', '--from', spec], dir, env),
      await cli(['restore', '--json', '--from', spec, '--postgres', `pg=${pgUrlWithPassword(restoredName)}`, '--sqlite', 'app=restored.db', '--verify-key-file', 'verify.asc'], dir, env),
      await cli(['verify', '--json', '--from', 'backups', '--level', 'restore', '--scratch-postgres', pgUrlWithPassword('postgres')], dir, env),
    ];
    for (const run of runs) assert.equal(run.code, 0, run.stderr);
    const archive = (await readdir(join(dir, 'backups'))).find((name) => name.endsWith('.gpg'))!;
    runs.push(await cli(['inspect', '--json', '--entries', join('backups', archive)], dir, env));
    assert.equal(runs.at(-1)?.code, 0, runs.at(-1)?.stderr);
    const failing = [
      await cli(['restore', '--json', '--verbose', '--from', spec, '--postgres', `pg=${pgUrlWithPassword(restoredName)}`], dir, env),
      await cli(['backup', '--json', '--verbose', '--postgres', `pg=${pgUrlWithPassword(database, 1)}`, '--to', 'backups'], dir, env),
      await cli(['verify', '--json', '--verbose', '--from', 'backups', '--level', 'restore', '--scratch-postgres', pgUrlWithPassword('postgres', 1)], dir, env),
      await cli(['backup', '--verbose', '--sqlite', 'app=app.db', '--to', `s3://${bucket}?endpoint=${encodeURIComponent('http://127.0.0.1:1')}&path-style=true`, '--encrypt'], dir, env),
    ];
    for (const run of failing) assert.notEqual(run.code, 0, run.stdout);
    for (const [i, run] of [...runs, ...failing].entries()) {
      assertNoSecret(keys, run.stdout, `stdout of command ${i}`);
      assertNoSecret(keys, run.stderr, `stderr of command ${i}`);
    }
    assert.match(runs[2]!.stdout, /"type":"result"/);
  });

  it('for Azure and SFTP: account keys, connection strings, SSH keys and passwords, successful or failing', async (t) => {
    const dir = await tempDir(t, 'secrets-remote');
    createBank(join(dir, 'app.db'), 20, 10);
    const [azurite, sshd] = await Promise.all([startAzurite(), startSshd()]);
    t.after(() => Promise.all([azurite.stop(), sshd.stop()]));
    const wrongKey = randomBytes(64).toString('base64');
    const password = `ssh-pw-${randomBytes(6).toString('hex')}`;
    const rightKey = new URL(`http://x/?${azurite.connectionString().replaceAll(';', '&')}`).searchParams.get('AccountKey') as string;
    const names: Record<string, string> = { rightKey, wrongKey, password };
    for (const [i, line] of sshd.privateKey.split('\n').filter((l) => l.length >= 40).entries()) names[`ssh key line ${i}`] = line;
    const found: Secrets = { names };
    const container = await azurite.createContainer();
    const folder = await sshd.folder();
    const ssh = { host: sshd.host, port: sshd.port, username: sshd.username, hostKey: sshd.hostKey, path: folder };
    const destinations = [azure({ container, connectionString: azurite.connectionString() }), sftp({ ...ssh, privateKey: sshd.privateKey })];
    const seen: string[] = [];

    const backup = new Database({ sources: [sqlite({ name: 'app', path: join(dir, 'app.db') })] }).startBackup({ to: destinations });
    seen.push(...recordEvents(backup));
    seen.push(inspect(await backup.done, { depth: 8 }));
    for (const destination of destinations) seen.push(inspect(await listBackups(destination), { depth: 8 }), inspect(await prune(destination, { keepLast: 5 }), { depth: 8 }), inspect(destination, { depth: 8 }));

    const errors = [
      await failure(listBackups(azure({ container, connectionString: azurite.connectionString(wrongKey), maxAttempts: 1 }))),
      await failure(new Database({ sources: [sqlite({ name: 'app', path: join(dir, 'app.db') })] }).startBackup({ to: azure({ container, connectionString: `AccountName=x;AccountKey=${wrongKey}` }) }).done),
      await failure(listBackups(sftp({ ...ssh, password }))), // the server takes keys only
      await failure(listBackups(sftp({ ...ssh, privateKey: sshd.privateKey, hostKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ' }))),
    ];
    for (const error of errors) seen.push(describeError(error));
    assertNoSecret(found, seen.join('\n'), 'an event, result or error');
    assertNoSecret(found, await folderContents(folder), 'the SFTP folder');
  });
});
