/** The path guard: the one check between an archive entry's name and the restore target. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkEntryPath } from '../../src/restore/path-guard.js';

describe('path guard', () => {
  it('splits safe names into their parts, dropping empty and "." parts', () => {
    assert.deepEqual(checkEntryPath('sources/app/db.sqlite'), ['sources', 'app', 'db.sqlite']);
    assert.deepEqual(checkEntryPath('./sources//files/./a b/ü.txt/'), ['sources', 'files', 'a b', 'ü.txt']);
    assert.deepEqual(checkEntryPath('a..b/..c/d..'), ['a..b', '..c', 'd..'], 'dots inside a name are no ".." component');
  });

  const refused: Array<[string, RegExp]> = [
    ['/etc/passwd', /absolute path/],
    ['//server/share/x', /absolute path/],
    ['sources/../../etc/passwd', /"\.\." component/],
    ['..', /"\.\." component/],
    ['sources/app/..', /"\.\." component/],
    ['C:/Windows/system32', /drive letter/],
    ['c:relative', /drive letter/],
    ['sources\\..\\evil', /backslash/],
    ['\\\\server\\share', /backslash/],
    ['sources/a\0.txt', /NUL byte/],
    ['', /names no file/],
    ['././/', /names no file/],
  ];
  for (const [name, why] of refused) {
    it(`refuses ${JSON.stringify(name)} with UNSAFE_ARCHIVE`, () => {
      assert.throws(() => checkEntryPath(name), (error: Error & { code?: string }) => {
        assert.equal(error.code, 'UNSAFE_ARCHIVE');
        assert.match(error.message, why);
        return true;
      });
    });
  }
});
