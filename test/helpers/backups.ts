import { memory } from '../../src/destinations/memory/index.js';
import type { Destination } from '../../src/types.js';
import { put } from './put.js';
import { sidecarFor } from './sidecar.js';

/** Backups at known UTC times, newest first: letter -> archive name. */
export const BACKUPS: Record<string, string> = {
  A: '20261121-100000.tar.gz', // Sat, ISO week 47, November
  B: '20261121-020000.tar.gz',
  C: '20261120-230000.tar.gz', // Fri
  D: '20261119-120000.tar.gz', // Thu
  E: '20261116-080000.tar.gz', // Mon, week 47
  F: '20261115-200000.tar.gz', // Sun, week 46
  G: '20261109-090000.tar.gz', // Mon, week 46
  H: '20261031-230000.tar.gz', // Sat, week 44, October
  I: '20261001-000000.tar.gz', // October
  J: '20260915-120000.tar.gz', // September
  K: '20251231-235900.tar.gz', // December 2025
};
export const NOW = new Date('2026-11-21T12:00:00Z');

/** Every backup of BACKUPS with a valid sidecar, but those of `sidecars` (letter -> its text, or undefined for none). */
export async function destinationWithBackups(sidecars: Record<string, string | undefined> = {}): Promise<Destination> {
  const destination = memory();
  for (const [letter, name] of Object.entries(BACKUPS)) {
    const bytes = Buffer.from(name);
    await put(destination, name, bytes);
    const sidecar = letter in sidecars ? sidecars[letter] : JSON.stringify(sidecarFor(name, bytes));
    if (sidecar !== undefined) await put(destination, `${name}.json`, Buffer.from(sidecar));
  }
  return destination;
}

export const letters = (names: readonly string[]) =>
  names.map((name) => Object.keys(BACKUPS).find((letter) => BACKUPS[letter] === name)).sort().join('');
