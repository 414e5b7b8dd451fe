import { BackupError } from '../../errors.js';
import type { SourceKind } from '../../types.js';
import { parseUrl } from '../../util/url.js';
import { postgres, postgresRestorer, type PostgresSourceOptions, type PostgresTarget } from './index.js';

/** `--jobs n`, given with `--postgres`: parallel connections of each PostgreSQL source and target. */
function jobsOf(flags: Readonly<Record<string, string>>): { jobs?: number } {
  const given = flags['jobs'];
  if (given === undefined) return {};
  const jobs = Number(given);
  if (!Number.isInteger(jobs) || jobs < 1) throw new BackupError('INVALID_OPTIONS', `--jobs takes a whole number of 1 or more, not ${JSON.stringify(given)}`);
  return { jobs };
}

/** The database a URL names: the path after the host. */
function databaseOf(url: string, name: string): string {
  const database = decodeURIComponent(parseUrl(url, `the target of --postgres ${name}`).pathname.replace(/^\//, ''));
  if (database === '') throw new BackupError('INVALID_OPTIONS', `--postgres ${name}=url: the URL names the database to restore into, as postgres://host/dbname`);
  return database;
}

/** The PostgreSQL source kind: `--postgres name=url`, `{ "kind": "postgres", "name": ..., "connection": ... }`. */
export const postgresKind: SourceKind<PostgresTarget, PostgresSourceOptions> = {
  kind: 'postgres',
  restorer: postgresRestorer,
  source: postgres,
  cli: {
    value: 'url',
    sourceHelp: 'a PostgreSQL database: postgres://user@host:port/dbname (password in PGPASSWORD)',
    targetHelp: 'restore the PostgreSQL source <name> into the database the URL names,\npostgres://user@host:port/dbname (created; the role may create databases)',
    flags: { jobs: { value: 'n', help: 'parallel connections for each --postgres source or target (default 2)' } },
    source: (name, value, { flags }) => postgres({ name, connection: value, ...jobsOf(flags) }),
    target: (name, value, { flags }) => ({ connection: value, database: databaseOf(value, name), ...jobsOf(flags) }),
    scratchServer: (value) => value,
    scratchHelp: 'the server where --level restore makes its throwaway databases\n(default: PGHOST, PGPORT, PGUSER)',
  },
  describeTarget: ({ database }) => `database ${database}`,
};
