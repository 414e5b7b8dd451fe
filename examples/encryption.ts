/**
 * An encrypted backup (`node build/examples/encryption.js`): OpenPGP with a passphrase, which
 * `gpg --decrypt` opens too, restored with the same passphrase. The passphrase comes from the
 * environment, as it should in production.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Database, directory, files } from 'backupkit';

const passphrase = process.env['BACKUPKIT_PASSPHRASE'] ?? 'an example passphrase, not a real one';
const work = await mkdtemp(join(tmpdir(), 'backupkit-encryption-example-'));
try {
  await mkdir(join(work, 'secrets'));
  await writeFile(join(work, 'secrets', 'contract.txt'), 'signed');
  const backups = directory({ path: join(work, 'backups') });
  const db = new Database({ sources: [files({ name: 'secrets', dir: join(work, 'secrets') })] });
  const { name } = await db.startBackup({ to: backups, encrypt: { passphrase } }).done;
  console.log(`wrote ${name}; by hand: gpg --decrypt ${name} | tar -xz`);

  await Database.restore({ from: backups, targets: { secrets: { dir: join(work, 'restored') } }, decrypt: { passphrase } });
  console.log(`restored: ${await readFile(join(work, 'restored', 'contract.txt'), 'utf8')}`);
} finally {
  await rm(work, { recursive: true, force: true });
}
