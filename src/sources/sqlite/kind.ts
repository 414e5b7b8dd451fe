import { resolve } from 'node:path';
import type { SourceKind } from '../../types.js';
import { sqlite, sqliteRestorer, type SqliteSourceOptions, type SqliteTarget } from './index.js';

/** The SQLite source kind: `--sqlite name=path`, `{ "kind": "sqlite", "name": ..., "path": ... }`. */
export const sqliteKind: SourceKind<SqliteTarget, SqliteSourceOptions> = {
  kind: 'sqlite',
  restorer: sqliteRestorer,
  source: sqlite,
  pathFields: ['path'],
  cli: {
    value: 'path',
    sourceHelp: 'a SQLite database file',
    targetHelp: 'restore the SQLite source <name> to this file',
    source: (name, value, { cwd }) => sqlite({ name, path: resolve(cwd, value) }),
    target: (_name, value, { cwd }) => ({ path: resolve(cwd, value) }),
  },
  describeTarget: ({ path }) => path,
};
