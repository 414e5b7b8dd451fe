/**
 * When schedule slots fall: intervals counted from the epoch, cron expressions of five or six
 * fields in a time zone, across a daylight-saving change, and the catch-up rule. Pure functions.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isOverdue, madeSince } from '../../src/schedule/catch-up.js';
import { parseTiming } from '../../src/schedule/timing.js';
import type { BackupInfo } from '../../src/listing.js';

const at = (iso: string) => Date.parse(iso);
const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());

describe('schedule timing', () => {
  it('an interval counts from the epoch: the same slots whenever the schedule started', () => {
    const quarter = parseTiming('incremental', '15m', undefined);
    assert.equal(iso(quarter.next(at('2026-12-03T10:07:31Z'))), '2026-12-03T10:15:00.000Z');
    assert.equal(iso(quarter.next(at('2026-12-03T10:15:00Z'))), '2026-12-03T10:30:00.000Z', 'strictly after');
    assert.equal(iso(quarter.previous(at('2026-12-03T10:15:00Z'))), '2026-12-03T10:15:00.000Z', 'at or before');
    assert.equal(iso(parseTiming('full', '1d', 'Europe/Paris').next(at('2026-12-03T10:00:00Z'))), '2026-12-04T00:00:00.000Z', "'1d' is midnight UTC, whatever the time zone");
    assert.equal(iso(parseTiming('full', '2s', undefined).next(at('2026-12-03T10:00:01.500Z'))), '2026-12-03T10:00:02.000Z');
  });

  it('a cron expression is read in its time zone, with or without seconds', () => {
    const paris = parseTiming('full', '0 3 * * *', 'Europe/Paris');
    assert.equal(iso(paris.next(at('2026-12-03T10:00:00Z'))), '2026-12-04T02:00:00.000Z', '03:00 in Paris in winter');
    assert.equal(iso(paris.next(at('2026-07-03T10:00:00Z'))), '2026-07-04T01:00:00.000Z', '03:00 in Paris in summer');
    assert.equal(iso(paris.previous(at('2026-12-04T02:00:00Z'))), '2026-12-04T02:00:00.000Z');
    assert.equal(iso(parseTiming('incremental', '*/10 * * * * *', 'UTC').next(at('2026-12-03T10:00:05Z'))), '2026-12-03T10:00:10.000Z');
  });

  it('across a daylight-saving change, a daily slot stays at its local time and happens once', () => {
    const paris = parseTiming('full', '30 3 * * *', 'Europe/Paris'); // clocks go back at 03:00 on 2026-10-25
    const first = paris.next(at('2026-10-24T12:00:00Z'));
    const second = paris.next(first ?? 0);
    assert.equal(iso(first), '2026-10-25T02:30:00.000Z');
    assert.equal(iso(second), '2026-10-26T02:30:00.000Z', 'the next day: 25 hours later, not twice in the repeated hour');
  });

  it('refuses what is neither an interval nor a cron expression', () => {
    for (const spec of ['0 3 * *', '0 0 0 3 * * *', 'hourly', '0s', '']) assert.throws(() => parseTiming('full', spec, undefined), { code: 'INVALID_OPTIONS' }, spec);
  });
});

describe('catch-up', () => {
  const backup = (name: string, createdAt: string, type: 'full' | 'incremental', trust: 'trusted' | 'unknown' = 'trusted'): BackupInfo =>
    ({ name, createdAt: new Date(createdAt), type, trust, sources: [{ name: 'app', kind: 'sqlite' }] }) as unknown as BackupInfo;
  const sources = [{ name: 'app', kind: 'sqlite' }];
  const daily = parseTiming('full', '0 3 * * *', 'UTC');
  const now = at('2026-12-03T10:00:00Z'); // the last slot: 03:00 today

  it('a full is overdue when no full of these sources, vouched for, was made since the last slot', () => {
    assert.equal(isOverdue('full', daily, [], sources, now), true, 'none at all');
    assert.equal(isOverdue('full', daily, [backup('b', '2026-12-03T03:00:00Z', 'full')], sources, now), false, 'made in the slot');
    assert.equal(isOverdue('full', daily, [backup('c', '2026-12-03T09:00:00Z', 'incremental'), backup('b', '2026-12-02T03:00:00Z', 'full')], sources, now), true, 'an incremental is no full');
    assert.equal(isOverdue('incremental', daily, [backup('c', '2026-12-03T09:00:00Z', 'incremental')], sources, now), false, 'for an incremental, either counts');
    assert.equal(isOverdue('full', daily, [backup('u', '2026-12-03T04:00:00Z', 'full', 'unknown')], sources, now), true, 'an unknown backup does not count');
    assert.equal(isOverdue('full', daily, [backup('b', '2026-12-03T04:00:00Z', 'full')], [{ name: 'other', kind: 'sqlite' }], now), true, 'of other sources');
  });

  it('a backup started in the slot\'s second counts as made for it', () => {
    assert.equal(madeSince('full', [backup('b', '2026-12-03T03:00:00Z', 'full')], sources, at('2026-12-03T03:00:00.700Z')), true);
    assert.equal(madeSince('full', [backup('b', '2026-12-03T02:59:59Z', 'full')], sources, at('2026-12-03T03:00:00Z')), false);
  });
});
