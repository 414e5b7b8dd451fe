/**
 * Backs up a folder once told "go" on stdin, with its clock set so that the backup starts at a
 * given instant, and prints `{ name, sha256 }`: two of these race for one archive name.
 * Usage: race-child.js <folder> <start ms> <destination as JSON: { path } or { endpoint, bucket }>
 */
import { once } from 'node:events';
import { Database, directory, files, s3 } from '../../src/index.js';
import { MOTO_CREDENTIALS } from './moto.js';

const [dir = '', startAt = '', spec = '{}'] = process.argv.slice(2);
const target = JSON.parse(spec) as { path?: string; endpoint?: string; bucket?: string };
const to =
  target.path !== undefined
    ? directory({ path: target.path })
    : s3({ bucket: target.bucket ?? '', endpoint: target.endpoint ?? '', forcePathStyle: true, credentials: MOTO_CREDENTIALS, partSize: 5 * 1024 * 1024 });
const database = new Database({ sources: [files({ name: 'f', dir })] });
process.stdout.write('ready\n');
await once(process.stdin, 'data');
const realNow = Date.now.bind(Date);
const offset = Number(startAt) - realNow();
Date.now = () => realNow() + offset;
const { name, sha256 } = await database.startBackup({ to }).done;
process.stdout.write(`${JSON.stringify({ name, sha256 })}\n`);
process.exit(0);
