/**
 * The dates of an FTP listing. MLSD (RFC 3659) gives them exactly; the older `LIST`, which servers
 * such as vsftpd only offer, gives them as `ls -l` does, without a year for recent files.
 */
import type { FileInfo } from 'basic-ftp';

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];

/**
 * When a listed file was last changed: exact from an MLSD listing; from a `LIST` line (`Dec 03
 * 07:20`, `Dec 03  2025`), to the minute or the day, read as UTC, the year of a recent date being
 * the one that puts it at most a day ahead of now. `new Date(0)` when the line has no date read.
 */
export function listedDate(info: Pick<FileInfo, 'modifiedAt' | 'rawModifiedAt'>, now = new Date()): Date {
  if (info.modifiedAt) return info.modifiedAt;
  const match = /^([A-Za-z]{3})\s+(\d{1,2})\s+(?:(\d{1,2}):(\d{2})|(\d{4}))$/.exec(info.rawModifiedAt.trim());
  const month = MONTHS.indexOf(match?.[1]?.toLowerCase() ?? '');
  if (!match || month < 0) return new Date(0);
  const day = Number(match[2]);
  if (match[5] !== undefined) return new Date(Date.UTC(Number(match[5]), month, day));
  const at = (year: number) => new Date(Date.UTC(year, month, day, Number(match[3]), Number(match[4])));
  const thisYear = at(now.getUTCFullYear());
  return thisYear.getTime() - now.getTime() > 24 * 3_600_000 ? at(now.getUTCFullYear() - 1) : thisYear;
}
