/**
 * Backups to S3-compatible storage with a retention policy (`node build/examples/s3.js`). Needs a
 * bucket: BACKUPKIT_S3_BUCKET, and BACKUPKIT_S3_ENDPOINT for a non-AWS server (MinIO, R2, moto);
 * credentials come from the AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Database, files, listBackups, s3 } from 'backupkit';

const bucket = process.env['BACKUPKIT_S3_BUCKET'];
if (!bucket) throw new Error('Set BACKUPKIT_S3_BUCKET (and BACKUPKIT_S3_ENDPOINT for a non-AWS server)');
const endpoint = process.env['BACKUPKIT_S3_ENDPOINT'];
const destination = s3({ bucket, prefix: 'example/', ...(endpoint ? { endpoint, forcePathStyle: true } : {}) });

const work = await mkdtemp(join(tmpdir(), 'backupkit-s3-example-'));
try {
  await mkdir(join(work, 'uploads'));
  await writeFile(join(work, 'uploads', 'photo.jpg'), 'jpeg bytes');
  const db = new Database({ sources: [files({ name: 'uploads', dir: join(work, 'uploads') })] });
  const result = await db.startBackup({ to: destination, retention: { keepLast: 3 } }).done;
  console.log(`uploaded ${result.name} (${result.size} bytes)`);
  for (const backup of await listBackups(destination)) console.log(`  ${backup.name}  ${backup.size} bytes`);
  await Database.restore({ from: destination, targets: { uploads: { dir: join(work, 'restored') } } });
  console.log('restored from the bucket');
} finally {
  await rm(work, { recursive: true, force: true });
}
