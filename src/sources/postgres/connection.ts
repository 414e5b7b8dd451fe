import { createRequire } from 'node:module';
import { setImmediate as nextMacrotask } from 'node:timers/promises';
import type { ConnectionOptions } from 'node:tls';
import type pg from 'pg';
import type * as PgConnectionString from 'pg-connection-string';
import type * as PgCopyStreams from 'pg-copy-streams';
import { BackupError, asBackupError } from '../../errors.js';
import { optionalPeer, optionalPeerSync, type Peer } from '../../util/peers.js';
import { redactText } from '../../util/redact.js';

/**
 * The settings of a `pg` client that backupkit reads: a `pg.ClientConfig` is one. Declared here so
 * that backupkit's types need neither `pg` nor `@types/pg` in an application that does not use
 * PostgreSQL.
 * @public
 */
export interface PostgresClientConfig {
  /** The server's host name, or a Unix socket folder. */
  host?: string | undefined;
  /** Default 5432. */
  port?: number | undefined;
  /** The role to log in as. */
  user?: string | undefined;
  /** A password, or a function returning one (for short-lived tokens, such as IAM authentication). */
  password?: string | (() => string | Promise<string>) | undefined;
  /** The database to connect to. */
  database?: string | undefined;
  /** `postgres://user@host:5432/database`; its fields win over the others, as in `pg`. */
  connectionString?: string | undefined;
  /** TLS: true, or Node.js TLS options (`ca`, `rejectUnauthorized`, ...). */
  ssl?: boolean | ConnectionOptions | undefined;
  /** Server settings sent at connection time, as `-c name=value` words. */
  options?: string | undefined;
  /** Milliseconds to wait for a connection; default: no limit. */
  connectionTimeoutMillis?: number | undefined;
  /** TCP keep-alive on the connection. */
  keepAlive?: boolean | undefined;
  /** Milliseconds of silence before the first keep-alive probe. */
  keepAliveInitialDelayMillis?: number | undefined;
  /** The server's `statement_timeout`, in milliseconds; false for none. */
  statement_timeout?: false | number | undefined;
  /** The server's `lock_timeout`, in milliseconds. */
  lock_timeout?: number | undefined;
  /** Milliseconds the client waits for a query's answer. */
  query_timeout?: number | undefined;
  /** The server's `idle_in_transaction_session_timeout`, in milliseconds. */
  idle_in_transaction_session_timeout?: number | undefined;
}

/**
 * An application's connection pool, such as a `pg.Pool`: only its settings are read.
 * @public
 */
export interface PostgresPool {
  /** The settings the pool opens its connections with. */
  readonly options: PostgresClientConfig;
  /** Lends a connection: a pool has it; backupkit never calls it. */
  connect(): Promise<unknown>;
}

/**
 * How backupkit reaches a PostgreSQL server: a connection string, a `pg` client config, or the
 * application's own `pg.Pool`, whose settings (not its connections) are borrowed, so a backup
 * never starves the application of pooled connections nor leaves session state in them.
 * @public
 */
export type PostgresConnection = string | PostgresClientConfig | PostgresPool;

const PEER: Omit<Peer, 'name'> = { feature: 'PostgreSQL sources', install: ['pg', 'pg-connection-string', 'pg-copy-streams'] };

/**
 * pg's dependencies and heaviest files, required one per turn of the host's event loop before pg
 * itself: loaded at once, they held the loop 40-50 ms when a backup started.
 */
const PG_PARTS = ['pg-types', 'pg-protocol', 'pgpass', 'pg-pool', 'pg-connection-string', './connection-parameters.js', './query.js'];

/** node-postgres, loaded when a PostgreSQL source or restore first connects. */
export const loadPg = optionalPeer({ name: 'pg', ...PEER }, async (): Promise<typeof pg> => {
  // Resolved as require() would: import.meta.resolve() gives pg's ESM wrapper.
  const main = createRequire(import.meta.url).resolve('pg');
  const require = createRequire(main);
  for (const part of PG_PARTS) {
    try {
      require(part);
    } catch {
      // moved or renamed in another pg release: loaded with pg below
    }
    await nextMacrotask();
  }
  // require(), not import(): import() of a CommonJS file parses it once more to detect its format.
  return require(main) as typeof pg;
});

/** COPY streams, imported when a table's data is first copied. */
export const loadCopyStreams = optionalPeer({ name: 'pg-copy-streams', ...PEER }, (): Promise<typeof PgCopyStreams> => import('pg-copy-streams'));

/**
 * The connection string parser, required (not imported) because options are checked synchronously,
 * when a source is created; it is a small CommonJS module.
 */
const loadConnectionStringParser = optionalPeerSync(
  { name: 'pg-connection-string', ...PEER },
  () => (createRequire(import.meta.url)('pg-connection-string') as typeof PgConnectionString).parseIntoClientConfig,
);

/** The settings to open dedicated clients with, optionally to another database. */
export function clientConfig(connection: PostgresConnection, database?: string): pg.ClientConfig {
  let config: pg.ClientConfig;
  if (typeof connection === 'string') config = loadConnectionStringParser()(checkConnectionString(connection));
  else if (isPool(connection)) config = { ...connection.options };
  else if (connection !== null && typeof connection === 'object') {
    // A connection string inside a config wins over its other fields in `pg`; parse it so `database` can be replaced.
    const { connectionString, ...rest } = connection;
    config = connectionString ? { ...rest, ...loadConnectionStringParser()(connectionString) } : { ...connection };
  } else {
    throw new BackupError('INVALID_OPTIONS', 'A PostgreSQL `connection` is a connection string, a pg client config or a pg.Pool');
  }
  return { ...config, ...(database === undefined ? {} : { database }), application_name: 'backupkit' };
}

/** A pool of any copy of `pg`, told by its shape: the application's `pg` may not be backupkit's. */
function isPool(connection: PostgresConnection): connection is PostgresPool {
  const pool = connection as Partial<PostgresPool>;
  return typeof pool.connect === 'function' && typeof pool.options === 'object' && pool.options !== null;
}

/** The forms pg-connection-string reads: a URL, or a Unix socket folder. */
const CONNECTION_STRING = /^(postgres(ql)?:\/\/|socket:|\/)/i;

/**
 * Refuses what pg-connection-string would misread: a bare database name such as `app` is taken
 * as a relative URL and fails only when connecting, as `getaddrinfo ENOTFOUND base`.
 */
function checkConnectionString(connection: string): string {
  if (CONNECTION_STRING.test(connection)) return connection;
  throw new BackupError('INVALID_OPTIONS', `A PostgreSQL \`connection\` string must be a URL, not ${JSON.stringify(redactText(connection))}`, {
    hint: 'Write postgres://user@host:5432/database (the password in PGPASSWORD or ~/.pgpass), or pass a pg client config such as { host, database }.',
  });
}

const CONNECT_HINT = 'Check the connection settings, and that the server is running and accepts connections from this host.';

/** Opens a dedicated client; failures become `code` with the server's message. */
export async function connect(config: pg.ClientConfig, code: 'SOURCE_FAILED' | 'RESTORE_FAILED'): Promise<pg.Client> {
  const pg = await loadPg();
  const client = new pg.Client(config);
  // An idle client whose server goes away emits 'error'; the query in flight (if any) rejects too.
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (cause) {
    await client.end().catch(() => {});
    throw asBackupError(cause, code, `Connecting to PostgreSQL database ${JSON.stringify(config.database ?? '')} failed`, CONNECT_HINT);
  }
  return client;
}

/**
 * A `pg.Pool` of at most `max` connections, each of which runs `settings` when it connects, before
 * any work is given to it. Failures to connect are `code` errors, as connect()'s.
 */
export class SessionPool {
  /** Each connection's settings, applied from the pool's `connect` event; work waits for them. */
  private readonly ready = new WeakMap<pg.PoolClient, Promise<void>>();
  /** The connections lent to work now running, which end() closes too. */
  private readonly lent = new Set<pg.PoolClient>();

  private constructor(
    private readonly pool: pg.Pool,
    private readonly code: 'SOURCE_FAILED' | 'RESTORE_FAILED',
    private readonly describeConnectFailure: (error: BackupError) => BackupError,
  ) {}

  static async open(
    config: pg.ClientConfig,
    options: { max: number; settings: readonly string[]; code: 'SOURCE_FAILED' | 'RESTORE_FAILED'; describeConnectFailure?: (error: BackupError) => BackupError },
  ): Promise<SessionPool> {
    const { Pool } = await loadPg();
    const pool = new Pool({ ...config, max: options.max });
    // An idle connection whose server goes away emits 'error' on the pool; the work in flight (if any) rejects too.
    pool.on('error', () => {});
    const sessions = new SessionPool(pool, options.code, options.describeConnectFailure ?? ((error) => error));
    pool.on('connect', (client) => {
      const applied = (async () => {
        for (const setting of options.settings) await client.query(setting);
      })();
      applied.catch(() => {}); // awaited by use(), which fails with it
      sessions.ready.set(client, applied);
    });
    return sessions;
  }

  /** Runs `work` on a pooled connection; a connection whose work failed is closed, not reused. */
  async use<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (cause) {
      throw this.describeConnectFailure(asBackupError(cause, this.code, `Connecting to PostgreSQL database ${JSON.stringify(this.pool.options.database ?? '')} failed`, CONNECT_HINT));
    }
    this.lent.add(client);
    try {
      await this.ready.get(client);
      const result = await work(client);
      this.giveBack(client, false);
      return result;
    } catch (error) {
      this.giveBack(client, true);
      throw error;
    }
  }

  private giveBack(client: pg.PoolClient, destroy: boolean): void {
    if (this.lent.delete(client)) client.release(destroy);
  }

  /** Closes every connection, those lent too: work still running fails, as when a client is ended. */
  async end(): Promise<void> {
    for (const client of this.lent) this.giveBack(client, true);
    if (!this.pool.ended) await this.pool.end();
  }
}

/** Quotes an identifier the way the server's quote_ident() does for names that need it. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** A string literal safe with standard_conforming_strings on or off. */
export function quoteLiteral(value: string): string {
  const body = value.replaceAll("'", "''");
  return value.includes('\\') ? `E'${body.replaceAll('\\', '\\\\')}'` : `'${body}'`;
}
