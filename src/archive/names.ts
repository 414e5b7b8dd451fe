/**
 * Archive names: the UTC start time, `YYYYMMDD-HHMMSS`, then `_NN` when several backups start in
 * the same second, then `.tar`, the compression's extension and `.gpg` if encrypted. `_` sorts
 * after `.`, so plain string order is chronological order.
 */
const ARCHIVE_NAME = /^(\d{8})-(\d{6})(?:_(\d{2,}))?\.tar(?:\.gz|\.zst)?(?:\.gpg)?$/;
export const SIDECAR_EXTENSION = '.json';
/** `<stem>.claim`: a backup's hold on its name while it runs (see backup/name-claim.ts). */
export const CLAIM_EXTENSION = '.claim';
export const ENCRYPTED_EXTENSION = '.gpg';
/** `<archive>.state`: what the sources saved for the next incremental (see backup/engine.ts). */
export const STATE_EXTENSION = '.state';

export function timestampOf(date: Date): string {
  const iso = date.toISOString(); // 2026-11-21T12:45:00.000Z
  return `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}-${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}`;
}

/** `extension` is what follows the stem: `.tar.gz`, `.tar.zst.gpg`, ... */
export function archiveName(date: Date, sequence: number, extension = '.tar.gz'): string {
  return `${archiveStem(date, sequence)}${extension}`;
}

export function archiveStem(date: Date, sequence: number): string {
  const suffix = sequence === 0 ? '' : `_${String(sequence).padStart(2, '0')}`;
  return `${timestampOf(date)}${suffix}`;
}

/** What precedes the first dot: `20261121-124500_01` for every object of that backup. */
export function stemOf(name: string): string {
  const dot = name.indexOf('.');
  return dot === -1 ? name : name.slice(0, dot);
}

/** An archive's name: of the right shape, and its timestamp a real UTC time (not `20261399-256199`). */
export function isArchiveName(name: string): boolean {
  return dateFromArchiveName(name) !== undefined;
}

/** The start time a name encodes, to the second; `undefined` if it is no archive name. */
export function dateFromArchiveName(name: string): Date | undefined {
  const match = ARCHIVE_NAME.exec(name);
  if (!match) return undefined;
  const [, day = '', time = ''] = match;
  const date = new Date(`${day.slice(0, 4)}-${day.slice(4, 6)}-${day.slice(6, 8)}T${time.slice(0, 2)}:${time.slice(2, 4)}:${time.slice(4, 6)}Z`);
  // Date rolls 2026-02-31 over to March 3rd: only a timestamp that prints back as itself is real.
  return !Number.isNaN(date.getTime()) && timestampOf(date) === `${day}-${time}` ? date : undefined;
}
