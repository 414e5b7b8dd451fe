import type { StoredObject } from '../types.js';
import type { ArchiveHeader, BackupType, ManifestSummary } from './format.js';
import { ENCRYPTED_EXTENSION, dateFromArchiveName, isArchiveName, stemOf } from './names.js';

/**
 * The small `<archive>.json` written beside each archive, so that listing never reads archives.
 * An archive restores without it.
 */
export interface BackupSidecar extends ArchiveHeader {
  size: number;
  sha256: string;
  encrypted: boolean;
  sourceStats: ManifestSummary['sources'];
  warnings: number;
  /** The `<archive>.state` object stored with it, for the next incremental to check before use. */
  state?: StoredState;
}

/** Size and SHA-256 of a stored `<archive>.state` object. */
export interface StoredState {
  size: number;
  sha256: string;
}

/** A sidecar is a few hundred bytes per source; anything huge is not ours. */
export const MAX_SIDECAR_BYTES = 1024 * 1024;

/** The fields of a sidecar that listing and retention use. */
export type ListedSidecar = Pick<BackupSidecar, 'name' | 'createdAt' | 'size' | 'sha256' | 'encrypted' | 'signature' | 'sourceStats' | 'base' | 'previous' | 'state' | 'encryption'> & {
  /** Always set: a sidecar without one is older than incremental backups, a full. */
  type: BackupType;
};

/** A sidecar checked against its archive: usable, or why not. */
export type SidecarCheck =
  | { readonly sidecar: ListedSidecar; readonly problem?: undefined }
  | { readonly problem: { readonly code: 'SIDECAR_INVALID' | 'SIDECAR_MISMATCH'; readonly message: string } };

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const SHA256 = /^[0-9a-f]{64}$/;
const FINGERPRINT = /^[0-9a-f]{16,64}$/i;

/**
 * Checks every field listing uses, by type and range, then that the sidecar describes `archive`:
 * its name, its start second (the name's timestamp is the truth), its listed size and whether it
 * is encrypted. Anyone who can write to the storage can write a sidecar; nothing unchecked in it
 * may decide what retention deletes.
 */
export function checkSidecar(value: unknown, archive: StoredObject): SidecarCheck {
  const invalid = (what: string): SidecarCheck => ({ problem: { code: 'SIDECAR_INVALID', message: `its sidecar's ${what}` } });
  const mismatch = (what: string): SidecarCheck => ({ problem: { code: 'SIDECAR_MISMATCH', message: `its sidecar ${what}` } });
  if (!isRecord(value)) return invalid('content is not a JSON object');
  const { name, createdAt, size, sha256, encrypted, signature, sourceStats, type = 'full', base, previous, state, encryption } = value;
  if (typeof name !== 'string') return invalid('name is not a string');
  if (typeof createdAt !== 'string' || !ISO_TIME.test(createdAt) || !isRoundTrip(createdAt)) return invalid(`createdAt ${describe(createdAt)} is not an ISO 8601 UTC time`);
  if (!isCount(size)) return invalid(`size ${describe(size)} is not a whole number of bytes`);
  if (typeof sha256 !== 'string' || !SHA256.test(sha256)) return invalid(`sha256 ${describe(sha256)} is not a SHA-256 in hex`);
  if (typeof encrypted !== 'boolean') return invalid(`encrypted ${describe(encrypted)} is not true or false`);
  if (signature !== undefined && !(isRecord(signature) && typeof signature['fingerprint'] === 'string' && FINGERPRINT.test(signature['fingerprint']))) {
    return invalid('signature has no key fingerprint');
  }
  if (!Array.isArray(sourceStats)) return invalid('sourceStats is not a list');
  const badSource = sourceStats.findIndex((s) => !(isRecord(s) && typeof s['name'] === 'string' && typeof s['kind'] === 'string' && isCount(s['bytes']) && isCount(s['items'])));
  if (badSource !== -1) return invalid(`sourceStats[${badSource}] is not { name, kind, bytes, items }`);
  if (state !== undefined && !(isRecord(state) && isCount(state['size']) && typeof state['sha256'] === 'string' && SHA256.test(state['sha256']))) {
    return invalid('state is not { size, sha256 }');
  }
  if (encryption !== undefined && !(isRecord(encryption) && Array.isArray(encryption['recipients']) && encryption['recipients'].every((r) => typeof r === 'string' && FINGERPRINT.test(r)))) {
    return invalid('encryption names no recipients list');
  }
  const chainProblem = checkChain(type, base, previous);
  if (chainProblem) return invalid(chainProblem);

  if (name !== archive.name) return mismatch(`describes ${JSON.stringify(name)}`);
  if (Math.floor(Date.parse(createdAt) / 1000) * 1000 !== dateFromArchiveName(archive.name)?.getTime()) {
    return mismatch(`says it was made at ${createdAt}, not in the second its name says`);
  }
  if (size !== archive.size) return mismatch(`says ${size} bytes; the archive stored has ${archive.size}`);
  if (encrypted !== archive.name.endsWith(ENCRYPTED_EXTENSION)) return mismatch(`says ${encrypted ? 'encrypted' : 'not encrypted'}; the name says otherwise`);
  // A chain runs back in time: a backup that builds on a later one (or on itself) would loop.
  if (typeof previous === 'string' && typeof base === 'string' && !(stemOf(base) <= stemOf(previous) && stemOf(previous) < stemOf(archive.name))) {
    return mismatch(`says it builds on ${previous} (chain ${base}), which is not earlier than the archive`);
  }
  return {
    sidecar: {
      name,
      createdAt,
      size,
      sha256,
      encrypted,
      signature: signature as ListedSidecar['signature'],
      sourceStats: sourceStats as ListedSidecar['sourceStats'],
      type: type as BackupType,
      ...(type === 'incremental' ? { base: base as string, previous: previous as string } : {}),
      ...(encryption === undefined ? {} : { encryption: encryption as ListedSidecar['encryption'] }),
      ...(state === undefined ? {} : { state: { size: (state as unknown as StoredState).size, sha256: (state as unknown as StoredState).sha256 } }),
    },
  };
}

/** A full names no other backup; an incremental names its chain's full and its predecessor. */
function checkChain(type: unknown, base: unknown, previous: unknown): string | undefined {
  if (type === 'full') return base === undefined && previous === undefined ? undefined : 'base or previous is set on a full backup';
  if (type !== 'incremental') return `type ${describe(type)} is not "full" or "incremental"`;
  if (typeof base !== 'string' || !isArchiveName(base)) return `base ${describe(base)} is not a backup's name`;
  if (typeof previous !== 'string' || !isArchiveName(previous)) return `previous ${describe(previous)} is not a backup's name`;
  return undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** `Date` accepts 2026-02-31 as March 3rd; a time that does not print back as itself is garbage. */
function isRoundTrip(iso: string): boolean {
  const date = new Date(iso);
  return !Number.isNaN(date.getTime()) && date.toISOString() === iso;
}

/** A sidecar's value, short enough for a message. */
function describe(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}
