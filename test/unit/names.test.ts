/** Archive names: made from the start time, recognised only when their time is real, sorted by time. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { archiveName, archiveStem, dateFromArchiveName, isArchiveName, stemOf, timestampOf } from '../../src/archive/names.js';

const START = new Date('2026-11-21T12:45:07.890Z');

describe('archive names', () => {
  it('are the UTC start time to the second, a sequence number from the second backup of that second, then the extension', () => {
    assert.equal(timestampOf(START), '20261121-124507');
    assert.equal(archiveName(START, 0), '20261121-124507.tar.gz');
    assert.equal(archiveName(START, 1, '.tar.zst.gpg'), '20261121-124507_01.tar.zst.gpg');
    assert.equal(archiveStem(START, 123), '20261121-124507_123');
  });

  it('share one stem across an archive, its sidecar and its claim', () => {
    for (const name of ['20261121-124507_01.tar.gz', '20261121-124507_01.tar.gz.json', '20261121-124507_01.claim']) assert.equal(stemOf(name), '20261121-124507_01');
    assert.equal(stemOf('no-dot'), 'no-dot');
  });

  it('give back their start time, to the second', () => {
    for (const extension of ['.tar', '.tar.gz', '.tar.zst', '.tar.gz.gpg', '.tar.gpg']) {
      assert.deepEqual(dateFromArchiveName(archiveName(START, 2, extension)), new Date('2026-11-21T12:45:07Z'), extension);
    }
  });

  it('are not recognised with another shape or a time that does not exist', () => {
    for (const name of [
      '20261121-124507.tar.gz.json',
      '20261121-124507.claim',
      '20261121-124507.zip',
      '20261121-124507_1.tar.gz',
      '2026112-124507.tar.gz',
      'x20261121-124507.tar.gz',
      '20261399-120000.tar.gz',
      '20260231-120000.tar.gz',
      '20261121-256199.tar.gz',
    ]) {
      assert.equal(isArchiveName(name), false, name);
      assert.equal(dateFromArchiveName(name), undefined, name);
    }
  });

  it('sort as text in the order of their start times, sequence numbers included', () => {
    const times = ['2025-12-31T23:59:59Z', '2026-01-01T00:00:00Z', '2026-11-21T12:45:07Z'].map((t) => new Date(t));
    const inOrder = times.flatMap((time) => [archiveName(time, 0), archiveName(time, 1), archiveName(time, 10)]);
    assert.deepEqual([...inOrder].reverse().sort(), inOrder);
  });
});
