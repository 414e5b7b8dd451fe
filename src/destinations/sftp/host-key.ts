import { createHash, createHmac } from 'node:crypto';
import { readFile } from 'node:fs/promises';

/**
 * Host key checking as OpenSSH's `StrictHostKeyChecking yes` does it: the server's key must be the
 * one given, or one that a known_hosts file lists for this host and port. Nothing is learnt on
 * first use: an unknown host is refused like a changed one.
 */

/** The accepted keys (raw public key blobs) and SHA-256 fingerprints for one host. */
export interface AcceptedKeys {
  readonly blobs: readonly Buffer[];
  readonly fingerprints: readonly string[];
  readonly revoked: readonly Buffer[];
}

/** `SHA256:<base64 without padding>`, as `ssh-keygen -l` prints it. */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** A key given as `ssh-ed25519 AAAA... [comment]`, as a bare base64 blob, or as a `SHA256:` fingerprint. */
export function parseHostKey(hostKey: string): AcceptedKeys {
  const trimmed = hostKey.trim();
  if (trimmed.startsWith('SHA256:')) return { blobs: [], fingerprints: [trimmed.replace(/=+$/, '')], revoked: [] };
  const parts = trimmed.split(/\s+/);
  const data = parts.length >= 2 ? parts[1] : parts[0];
  return { blobs: [Buffer.from(data ?? '', 'base64')], fingerprints: [], revoked: [] };
}

/** The name known_hosts files use for a host: `host`, or `[host]:port` off port 22. */
function hostName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** Whether one known_hosts host field (comma-separated patterns, `*`, `?`, `!`, or a hashed `|1|salt|hash`) matches. */
function matchesHost(field: string, name: string): boolean {
  if (field.startsWith('|1|')) {
    const [, , salt, hash] = field.split('|');
    return createHmac('sha1', Buffer.from(salt ?? '', 'base64')).update(name).digest('base64') === hash;
  }
  let matched = false;
  for (const pattern of field.split(',')) {
    const negated = pattern.startsWith('!');
    const glob = negated ? pattern.slice(1) : pattern;
    const regex = new RegExp(`^${glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 'i');
    if (!regex.test(name)) continue;
    if (negated) return false;
    matched = true;
  }
  return matched;
}

/** The keys a known_hosts file lists for `host` at `port`; `@cert-authority` lines are not supported and skipped. */
export async function readKnownHosts(path: string, host: string, port: number): Promise<AcceptedKeys> {
  const name = hostName(host, port);
  const blobs: Buffer[] = [];
  const revoked: Buffer[] = [];
  for (const line of (await readFile(path, 'utf8')).split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (fields[0] === undefined || fields[0] === '' || fields[0].startsWith('#')) continue;
    const marker = fields[0].startsWith('@') ? fields.shift() : undefined;
    const [hosts, , data] = fields;
    if (hosts === undefined || data === undefined || marker === '@cert-authority' || !matchesHost(hosts, name)) continue;
    (marker === '@revoked' ? revoked : blobs).push(Buffer.from(data, 'base64'));
  }
  return { blobs, fingerprints: [], revoked };
}

/** Whether the server's key `blob` is accepted. */
export function isAccepted(accepted: AcceptedKeys, blob: Buffer): boolean {
  if (accepted.revoked.some((key) => key.equals(blob))) return false;
  return accepted.blobs.some((key) => key.equals(blob)) || accepted.fingerprints.includes(fingerprint(blob));
}
