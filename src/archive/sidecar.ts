import type { ArchiveHeader, ManifestSummary } from './format.js';

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
}
