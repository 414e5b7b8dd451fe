import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { buffer } from 'node:stream/consumers';
import { after, before, describe, it } from 'node:test';
import { Database, files, gcs, listBackups, s3, type GcsOptions } from '../src/index.js';
import { destinationKinds } from '../src/kinds.js';
import { testDestination } from './conformance/destination.js';
import { put } from './helpers/put.js';
import { tempDir } from './helpers/fs.js';
import { MOTO_CREDENTIALS, startMoto, type Moto } from './helpers/moto.js';
import { startRecordingProxy, type RecordedRequest, type RecordingProxy } from './helpers/recording-proxy.js';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

// GCS's XML API speaks S3's: gcs() is tested against moto, as the S3-compatible server it is,
// through a proxy that records what goes on the wire.
let moto: Moto;
let proxy: RecordingProxy;
before(async () => {
  moto = await startMoto();
  proxy = await startRecordingProxy(moto.endpoint);
});
after(async () => {
  await proxy?.stop();
  await moto?.stop();
});

const destinationOn = (bucket: string, extra: Partial<GcsOptions> = {}) =>
  gcs({ bucket, endpoint: proxy.endpoint, credentials: MOTO_CREDENTIALS, partSize: 5 * 1024 * 1024, ...extra });

testDestination('gcs (its XML API, against moto)', async () => ({ destination: destinationOn(await moto.createBucket(), { prefix: 'backups/app' }), cleanup: async () => {} }), { fakeUploadStartTimes: true });

/** The requests made to `bucket` while `fn` ran. */
async function requestsDuring(bucket: string, fn: () => Promise<unknown>): Promise<RecordedRequest[]> {
  const first = proxy.requests.length;
  await fn();
  return proxy.requests.slice(first).filter((r) => r.url.startsWith(`/${bucket}`));
}

const checksumHeaders = (r: RecordedRequest) => Object.keys(r.headers).filter((name) => /^x-amz-(sdk-)?checksum/.test(name) || (name === 'content-encoding' && /aws-chunked/.test(String(r.headers[name]))));

describe('gcs destination', () => {
  it("sends what GCS's XML API takes: path style, region auto, no AWS checksums, x-goog-if-generation-match: 0 on each create", async (t) => {
    const bucket = await moto.createBucket();
    const destination = destinationOn(bucket, { prefix: 'nightly/' });
    assert.equal(destination.kind, 'gcs');
    assert.equal(destination.description, `gs://${bucket}/nightly/`);
    const big = randomBytes(6 * 1024 * 1024); // two parts: a multipart upload
    const dir = await tempDir(t, 'gcs');
    await mkdir(join(dir, 'blobs'));
    await writeFile(join(dir, 'blobs', 'small.bin'), randomBytes(1000));
    const seen = await requestsDuring(bucket, async () => {
      await put(destination, 'small.tar.gz', Buffer.from('small'));
      await put(destination, 'big.tar.gz', big);
      await new Database({ sources: [files({ name: 'blobs', dir: join(dir, 'blobs') })] }).startBackup({ to: destination }).done;
      assert.ok((await buffer(await destination.open('big.tar.gz'))).equals(big));
      assert.equal((await listBackups(destination)).length, 1);
    });
    assert.ok(seen.length > 8, 'the requests went through the proxy');
    for (const r of seen) {
      assert.match(String(r.headers.authorization), /\/auto\/s3\/aws4_request/, `${r.method} ${r.url}: signed for region auto`);
      assert.deepEqual(checksumHeaders(r), [], `${r.method} ${r.url}: no AWS checksum`);
      assert.doesNotMatch(String(r.headers['x-amz-content-sha256']), /^STREAMING/, `${r.method} ${r.url}: no streaming signature`);
    }
    const isCreate = (r: RecordedRequest) => (r.method === 'PUT' && !/[?&]partNumber=/.test(r.url)) || (r.method === 'POST' && /[?&]uploadId=/.test(r.url));
    const creates = seen.filter(isCreate);
    assert.ok(creates.some((r) => r.method === 'POST'), 'a multipart upload was completed');
    assert.ok(creates.length >= 4, 'the objects and the backup were created');
    for (const r of creates) assert.equal(r.headers['x-goog-if-generation-match'], '0', `${r.method} ${r.url}`);
    for (const r of seen.filter((r) => !isCreate(r))) assert.equal(r.headers['x-goog-if-generation-match'], undefined, `${r.method} ${r.url}: only creates`);

    // The same calls through s3() do carry the SDK's checksums: the checks above look at what differs.
    const viaS3 = await requestsDuring(bucket, () => put(s3({ bucket, endpoint: proxy.endpoint, forcePathStyle: true, credentials: MOTO_CREDENTIALS }), 'plain.tar.gz', Buffer.from('plain')));
    assert.ok(viaS3.some((r) => checksumHeaders(r).length > 0), 's3() sends x-amz-checksum headers');
    assert.ok(viaS3.every((r) => r.headers['x-goog-if-generation-match'] === undefined));
  });

  it('needs an HMAC key, and reads gs://bucket/prefix URLs with the key from the environment', (t) => {
    assert.throws(() => gcs({ bucket: 'b' } as GcsOptions), { code: 'INVALID_OPTIONS', message: /HMAC key/ });
    assert.throws(() => gcs({ bucket: '', credentials: MOTO_CREDENTIALS }), { code: 'INVALID_OPTIONS', message: /gcs\(\) needs a `bucket`/ });
    const kind = destinationKinds().find((k) => k.kind === 'gcs');
    assert.deepEqual(kind?.schemes, ['gs:']);
    const saved = { id: process.env['BACKUPKIT_GCS_HMAC_ACCESS_ID'], secret: process.env['BACKUPKIT_GCS_HMAC_SECRET'] };
    t.after(() => {
      for (const [name, value] of [['BACKUPKIT_GCS_HMAC_ACCESS_ID', saved.id], ['BACKUPKIT_GCS_HMAC_SECRET', saved.secret]] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    });
    delete process.env['BACKUPKIT_GCS_HMAC_ACCESS_ID'];
    assert.throws(() => kind?.fromSpec?.('gs://b/p', '/'), { code: 'INVALID_OPTIONS', message: /HMAC key/ });
    process.env['BACKUPKIT_GCS_HMAC_ACCESS_ID'] = 'GOOG1EXAMPLE';
    process.env['BACKUPKIT_GCS_HMAC_SECRET'] = 'secret';
    const destination = kind?.fromSpec?.('gs://my-bucket/app/nightly?endpoint=http://127.0.0.1:9', '/');
    assert.equal(destination?.description, 'gs://my-bucket/app/nightly/');
    assert.equal(destination?.kind, 'gcs');
  });
});
