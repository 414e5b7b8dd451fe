import { createHash } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** A valid sidecar for an archive `name` holding `bytes`, as a backup writes it; `fields` override. */
export function sidecarFor(name: string, bytes: Buffer, fields: Record<string, unknown> = {}): Record<string, unknown> {
  const [, day = '', time = ''] = /^(\d{8})-(\d{6})/.exec(name) ?? [];
  return {
    format: 'backupkit',
    formatVersion: 2,
    backupkitVersion: '0.1.0',
    name,
    createdAt: `${day.slice(0, 4)}-${day.slice(4, 6)}-${day.slice(6, 8)}T${time.slice(0, 2)}:${time.slice(2, 4)}:${time.slice(4, 6)}.250Z`,
    compression: { algorithm: 'gzip', level: 1 },
    sources: [{ name: 'app', kind: 'sqlite', estimatedBytes: 10, estimatedItems: 1 }],
    size: bytes.length,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    encrypted: name.endsWith('.gpg'),
    sourceStats: [{ name: 'app', kind: 'sqlite', bytes: 10, items: 1 }],
    warnings: 0,
    ...fields,
  };
}

/**
 * Sidecars that must not decide what retention deletes, each with the problem listing reports: the
 * sidecar's text, or `undefined` for none, given the archive's name and the name of another one.
 */
export const UNTRUSTWORTHY_SIDECARS: ReadonlyArray<{ label: string; code: string; text: (name: string, bytes: Buffer, other: string) => string | undefined }> = [
  { label: 'createdAt garbage text', code: 'SIDECAR_INVALID', text: (n, b) => JSON.stringify(sidecarFor(n, b, { createdAt: 'yesterday' })) },
  { label: 'createdAt a number', code: 'SIDECAR_INVALID', text: (n, b) => JSON.stringify(sidecarFor(n, b, { createdAt: 1_700_000_000_000 })) },
  { label: 'createdAt a day that does not exist', code: 'SIDECAR_INVALID', text: (n, b) => JSON.stringify(sidecarFor(n, b, { createdAt: '2026-02-31T00:00:00.000Z' })) },
  { label: 'createdAt in the far past', code: 'SIDECAR_MISMATCH', text: (n, b) => JSON.stringify(sidecarFor(n, b, { createdAt: '1970-01-01T00:00:00.000Z' })) },
  { label: 'createdAt in the far future', code: 'SIDECAR_MISMATCH', text: (n, b) => JSON.stringify(sidecarFor(n, b, { createdAt: '2999-12-31T23:59:59.000Z' })) },
  { label: 'sourceStats not an array', code: 'SIDECAR_INVALID', text: (n, b) => JSON.stringify(sidecarFor(n, b, { sourceStats: { app: 1 } })) },
  { label: 'a source of sourceStats without bytes', code: 'SIDECAR_INVALID', text: (n, b) => JSON.stringify(sidecarFor(n, b, { sourceStats: [{ name: 'app', kind: 'sqlite', bytes: -1, items: 1 }] })) },
  { label: 'size a string', code: 'SIDECAR_INVALID', text: (n, b) => JSON.stringify(sidecarFor(n, b, { size: '12' })) },
  { label: 'signature without a fingerprint', code: 'SIDECAR_INVALID', text: (n, b) => JSON.stringify(sidecarFor(n, b, { signature: { method: 'openpgp' } })) },
  { label: 'a type other than full or incremental', code: 'SIDECAR_INVALID', text: (n, b) => JSON.stringify(sidecarFor(n, b, { type: 'differential' })) },
  { label: 'an incremental naming no base', code: 'SIDECAR_INVALID', text: (n, b, other) => JSON.stringify(sidecarFor(n, b, { type: 'incremental', previous: other })) },
  { label: 'a full naming a previous backup', code: 'SIDECAR_INVALID', text: (n, b, other) => JSON.stringify(sidecarFor(n, b, { type: 'full', previous: other })) },
  { label: 'an incremental building on a later backup', code: 'SIDECAR_MISMATCH', text: (n, b, other) => JSON.stringify(sidecarFor(n, b, { type: 'incremental', base: other, previous: other })) },
  { label: 'a JSON array', code: 'SIDECAR_INVALID', text: () => '[]' },
  { label: 'truncated JSON', code: 'SIDECAR_UNPARSABLE', text: (n, b) => JSON.stringify(sidecarFor(n, b), null, 2).slice(0, 100) },
  { label: 'larger than 1 MiB', code: 'SIDECAR_UNPARSABLE', text: (n, b) => JSON.stringify(sidecarFor(n, b, { padding: 'x'.repeat(1024 * 1024) })) },
  { label: "another archive's sidecar", code: 'SIDECAR_MISMATCH', text: (_n, b, other) => JSON.stringify(sidecarFor(other, b)) },
  { label: 'a size other than the stored archive', code: 'SIDECAR_MISMATCH', text: (n, b) => JSON.stringify(sidecarFor(n, b, { size: b.length + 1 })) },
  { label: 'encrypted, though the name says not', code: 'SIDECAR_MISMATCH', text: (n, b) => JSON.stringify(sidecarFor(n, b, { encrypted: true })) },
  { label: 'missing', code: 'SIDECAR_MISSING', text: () => undefined },
];

/** Replaces the sidecar of `name` in the folder `dir` with `text`, or removes it for `undefined`. */
export async function replaceSidecar(dir: string, name: string, text: string | undefined): Promise<void> {
  await rm(join(dir, `${name}.json`), { force: true });
  if (text !== undefined) await writeFile(join(dir, `${name}.json`), text);
}
