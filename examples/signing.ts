/**
 * A signed backup (`node build/examples/signing.js`): signed with an OpenPGP key at backup,
 * restored only because a signature by that key checks out, and refused when another key is
 * required. The key pair is made here, so the example needs no files; in production the private key
 * stays on the backup host and restorers hold only the public key (docs/guides/signing.md).
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import { BackupError, Database, directory, files } from 'backupkit';

/** A v4 Ed25519 key pair, as `gpg --quick-generate-key NAME ed25519 sign` makes. */
async function keyPair(name: string) {
  return openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ name, email: 'backups@example.com' }], format: 'armored' });
}

const work = await mkdtemp(join(tmpdir(), 'backupkit-signing-example-'));
try {
  const backupKey = await keyPair('Example backups');
  await mkdir(join(work, 'invoices'));
  await writeFile(join(work, 'invoices', '2026-001.txt'), 'paid');
  const backups = directory({ path: join(work, 'backups') });
  const db = new Database({ sources: [files({ name: 'invoices', dir: join(work, 'invoices') })] });
  const { name, signedBy } = await db.startBackup({ to: backups, sign: { privateKey: backupKey.privateKey } }).done;
  console.log(`wrote ${name}, signed by ${signedBy}`);

  // A restore that requires the signature: anything the key did not sign is refused before a byte is restored.
  const restored = await Database.restore({ from: backups, targets: { invoices: { dir: join(work, 'restored') } }, verifySignature: { publicKeys: [backupKey.publicKey] } });
  console.log(`restored ${restored.name}: signature good, signed by ${restored.signedBy}; 2026-001.txt says ${await readFile(join(work, 'restored', '2026-001.txt'), 'utf8')}`);

  const otherKey = await keyPair('Someone else');
  try {
    await Database.restore({ from: backups, targets: { invoices: { dir: join(work, 'refused') } }, verifySignature: { publicKeys: [otherKey.publicKey] } });
    throw new Error('an archive signed by another key was restored');
  } catch (error) {
    if (!(error instanceof BackupError) || error.code !== 'SIGNATURE_INVALID') throw error;
    console.log(`refused with another key: ${error.code}`);
  }
} finally {
  await rm(work, { recursive: true, force: true });
}
