/** What a redacted secret is replaced with. */
const REDACTED = '***';

/**
 * Fields that hold a secret wherever they appear: PostgreSQL and `pg` settings, S3 and Azure
 * credentials, SSH keys and passwords, OpenPGP passphrases and keys. Compared without case, `_` or `-`.
 */
const SECRET_FIELDS: ReadonlySet<string> = new Set([
  'password',
  'passphrase',
  'passphrases',
  'privatekey',
  'privatekeys',
  'secretaccesskey',
  'sessiontoken',
  'credentials',
  'sslkey',
  'accountkey',
  'connectionstring',
  'sastoken',
]);

/** `scheme://user:password@` in any string: a connection string or an endpoint with credentials. */
const URL_PASSWORD = /([a-z][a-z0-9+.-]*:\/\/[^/\s:@]*):[^@\s/]*@/gi;

/** An Azure connection string's key or SAS token, and a SAS signature in a URL's query. */
const AZURE_SECRET = /((?:AccountKey|SharedAccessSignature)=)[^;\s]*|([?&]sig=)[^&\s]*/gi;

/**
 * `postgres://user:secret@host/db` becomes `postgres://user:***@host/db`, `AccountKey=secret;`
 * becomes `AccountKey=***;`, `?sig=secret` becomes `?sig=***`; other text is kept.
 */
export function redactText(text: string): string {
  return text.replace(URL_PASSWORD, `$1:${REDACTED}@`).replace(AZURE_SECRET, (_, key: string | undefined, sig: string | undefined) => `${key ?? sig}${REDACTED}`);
}

/**
 * A copy of `value` that is safe to return, emit, log or store: secret fields are replaced with
 * `***`, passwords inside connection strings too, and objects that are not plain data (a `pg.Pool`,
 * an S3 client) become their class name, as they carry credentials of their own. Everything that
 * echoes a target, a connection or options goes through it.
 */
export function redact<T>(value: T): T {
  return redactValue(value, new WeakSet()) as T;
}

function redactValue(value: unknown, seen: WeakSet<object>): unknown {
  if (typeof value === 'string') return redactText(value);
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Date) return value;
  if (seen.has(value)) return '[circular]';
  seen.add(value);
  if (Array.isArray(value)) return value.map((item) => redactValue(item, seen));
  const prototype = Object.getPrototypeOf(value) as unknown;
  if (prototype !== Object.prototype && prototype !== null) return `[${(value as object).constructor?.name ?? 'object'}]`;
  return Object.fromEntries(
    Object.entries(value).map(([key, field]) => [key, isSecretField(key) && field !== undefined ? REDACTED : redactValue(field, seen)]),
  );
}

function isSecretField(key: string): boolean {
  return SECRET_FIELDS.has(key.toLowerCase().replaceAll(/[_-]/g, ''));
}
