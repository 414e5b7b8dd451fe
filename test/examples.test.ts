/** Every file in examples/ runs to completion, as a user would run it, and prints what it promises. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { MOTO_CREDENTIALS, startMoto, type Moto } from './helpers/moto.js';
import { pgUrl, sql } from './helpers/postgres.js';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');
const example = (name: string) => join(ROOT, 'build', 'examples', name);
const { NODE_TEST_CONTEXT: _, ...baseEnv } = process.env;

async function node(file: string, env: NodeJS.ProcessEnv = {}): Promise<string> {
  const { stdout } = await run(process.execPath, [example(file)], { env: { ...baseEnv, ...env } });
  return stdout;
}

describe('examples/', () => {
  it('basic.ts: backs up, restores and checks a SQLite database and a folder', async () => {
    assert.match(await node('basic.js'), /wrote \d{8}-\d{6}\.tar\.gz/);
  });

  it('verify.ts: checksums, then a restore into throwaway targets', async () => {
    const stdout = await node('verify.js');
    assert.match(stdout, /entries match their SHA-256/);
    assert.match(stdout, /app: PRAGMA integrity_check: \{"tables":1,"rows":2,"foreignKeyViolations":0\}/);
  });

  it('schedule.ts: a catch-up full at start, an incremental slot, metrics, a clean stop', async () => {
    const stdout = await node('schedule.js');
    assert.match(stdout, /^catch-up full: succeeded \d{8}-\d{6}\.tar\.gz$/m);
    assert.match(stdout, /^schedule incremental: (succeeded \S+|skipped \S* ?\((running|unchanged)\))$/m);
    assert.match(stdout, /^backupkit_schedule_last_success_timestamp_seconds\{schedule="example",type="full"\} \d+(\.\d+)?$/m);
  });

  it('incremental.ts: a full, an incremental of what changed, nothing written when nothing did, restores as of each', async () => {
    const stdout = await node('incremental.js');
    const [, fullName, fullSize] = /^full (\S+): (\d+) bytes$/m.exec(stdout) ?? [];
    const [, incName, previous, incSize] = /^incremental (\S+) on (\S+): (\d+) bytes$/m.exec(stdout) ?? [];
    assert.equal(previous, fullName);
    assert.ok(Number(incSize) < Number(fullSize) / 4, `the incremental (${incSize} bytes) holds a fraction of the full (${fullSize})`);
    assert.match(stdout, new RegExp(`^unchanged: true, still ${incName?.replaceAll('.', '\\.')}$`, 'm'));
    assert.match(stdout, /^as of full: read 1 archive\(s\), 5000 notes, new photo absent$/m);
    assert.match(stdout, /^as of incremental: read 2 archive\(s\), 5001 notes, new photo present$/m);
  });

  it('encryption.ts: an OpenPGP archive restored with its passphrase', async () => {
    assert.match(await node('encryption.js'), /restored: signed/);
  });

  it('signing.ts: a signed backup restored with its public key, and refused with another', async () => {
    const stdout = await node('signing.js');
    assert.match(stdout, /^wrote \d{8}-\d{6}\.tar\.gz, signed by ([0-9a-f]{40})$/m);
    const fingerprint = /signed by ([0-9a-f]{40})/.exec(stdout)?.[1];
    assert.match(stdout, new RegExp(`^restored \\S+: signature good, signed by ${fingerprint}; 2026-001\\.txt says paid$`, 'm'));
    assert.match(stdout, /^refused with another key: SIGNATURE_INVALID$/m);
  });

  it('custom-source.ts: a key-value store kind registered by the application, backed up, restored, refused over a full store and verified', async () => {
    const stdout = await node('custom-source.js');
    assert.match(stdout, /^restored 3 keys, theme dark$/m);
    assert.match(stdout, /^restoring over a store that holds keys: TARGET_NOT_EMPTY; \d+ bytes untouched$/m);
    assert.match(stdout, /^verified: store contents: \{"keys":3\}$/m);
  });

  it('postgres.ts: a database backed up over the wire and restored into a new one', async () => {
    assert.match(await node('postgres.js', { DATABASE_URL: pgUrl('postgres') }), /restored example_shop_restored_\S+: 1000 orders, total 750750\.00/);
    const [leftover] = await sql<{ table: string | null }>('postgres', "SELECT to_regclass('public.orders')::text AS table");
    assert.equal(leftover?.table, null, 'the example works in its own databases, never in the one DATABASE_URL names');
  });

  it('cli.sh: the command line end to end', async () => {
    const { stdout } = await run('bash', [join(ROOT, 'examples', 'cli.sh')], { env: baseEnv });
    assert.match(stdout, /"command":"restore"/);
    assert.match(stdout, /^hello$/m);
  });

  describe('s3.ts, against moto_server', () => {
    let moto: Moto;
    before(async () => (moto = await startMoto()));
    after(() => moto.stop());

    it('uploads, lists and restores from the bucket', async () => {
      const env = {
        BACKUPKIT_S3_BUCKET: await moto.createBucket(),
        BACKUPKIT_S3_ENDPOINT: moto.endpoint,
        AWS_ACCESS_KEY_ID: MOTO_CREDENTIALS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: MOTO_CREDENTIALS.secretAccessKey,
        AWS_REGION: 'us-east-1',
      };
      assert.match(await node('s3.js', env), /restored from the bucket/);
    });
  });
});
