import { createRequire } from 'node:module';
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

/** node-postgres, imported when a PostgreSQL source or restore first connects. */
export const loadPg = optionalPeer({ name: 'pg', ...PEER }, async () => (await import('pg')).default);

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
    throw asBackupError(cause, code, `Connecting to PostgreSQL database ${JSON.stringify(config.database ?? '')} failed`,
      'Check the connection settings, and that the server is running and accepts connections from this host.');
  }
  return client;
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
