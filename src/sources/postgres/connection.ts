import pg from 'pg';
import { parseIntoClientConfig } from 'pg-connection-string';
import { BackupError, asBackupError } from '../../errors.js';
import { redactText } from '../../util/redact.js';

/**
 * How backupkit reaches a PostgreSQL server: a connection string, a `pg` client config, or the
 * application's own `pg.Pool`, whose settings (not its connections) are borrowed, so a backup
 * never starves the application of pooled connections nor leaves session state in them.
 * @public
 */
export type PostgresConnection = string | pg.ClientConfig | pg.Pool;

/** The settings to open dedicated clients with, optionally to another database. */
export function clientConfig(connection: PostgresConnection, database?: string): pg.ClientConfig {
  let config: pg.ClientConfig;
  if (typeof connection === 'string') config = parseIntoClientConfig(checkConnectionString(connection));
  else if (connection instanceof pg.Pool) config = { ...(connection as pg.Pool & { options: pg.PoolConfig }).options };
  else if (connection !== null && typeof connection === 'object') {
    // A connection string inside a config wins over its other fields in `pg`; parse it so `database` can be replaced.
    const { connectionString, ...rest } = connection;
    config = connectionString ? { ...rest, ...parseIntoClientConfig(connectionString) } : { ...connection };
  } else {
    throw new BackupError('INVALID_OPTIONS', 'A PostgreSQL `connection` is a connection string, a pg client config or a pg.Pool');
  }
  return { ...config, ...(database === undefined ? {} : { database }), application_name: 'backupkit' };
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
