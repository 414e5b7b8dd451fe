import { once } from 'node:events';
import { isIP } from 'node:net';
import { PassThrough, Readable, Writable } from 'node:stream';
import type * as BasicFtp from 'basic-ftp';
import type { Client, FileInfo } from 'basic-ftp';
import { BackupError } from '../../errors.js';
import type { Destination, ReadRange, StoredObject, Upload } from '../../types.js';
import { ABANDONED_AFTER_MS, isAbandoned, ownerTag } from '../../util/leftovers.js';
import { optionalPeer } from '../../util/peers.js';
import { checkObjectName } from '../object-name.js';
import { checkRange } from '../range.js';
import { listedDate } from './list-date.js';

/**
 * Options of {@link ftp}.
 * @public
 */
export interface FtpOptions {
  /** The server's name or address. */
  host: string;
  /** Default 21. */
  port?: number;
  /** The user to log in as. */
  user: string;
  /** The user's password. Never echoed. */
  password: string;
  /**
   * Explicit FTPS: `AUTH TLS` before logging in, and every transfer encrypted; default false. The
   * server's certificate is checked against the system's CAs, and `ca` if given.
   */
  secure?: boolean;
  /** With `secure`: the PEM certificate(s) to trust besides the system's, such as a self-signed server's own. */
  ca?: string | Buffer;
  /** The folder archives go to on the server: absolute, or relative to the login folder. It must exist. */
  path: string;
  /**
   * Milliseconds to wait for the server: to connect, to answer a command, and during a transfer
   * (time spent waiting for our own side does not count); default 30 000.
   */
  timeout?: number;
  /**
   * Connections open to the server at once, idle ones included; default 4, at least 2. FTP carries
   * one transfer per connection: listing reads several sidecars at once, a backup holds one
   * connection for its archive throughout. A call beyond it waits for a connection to be free.
   * Keep it within the server's limit of connections per client address.
   */
  maxConnections?: number;
}

/** `.<name>.<owner tag>.partial`: see util/leftovers.ts. */
const TEMPORARY = /^\.(.+)\.([^.]+)\.partial$/;
/** `.<name>.lock`: a folder held while `<name>` is committed (MKD is the one atomic test-and-set FTP has). */
const LOCK = /^\.(.+)\.lock$/;
const MIB = 1024 * 1024;
/** How long a connection a call finished with is kept for the next one. */
const IDLE_MS = 5_000;
const NETWORK_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'EPIPE']);

/** basic-ftp, imported when an FTP destination first connects. */
const loadSdk = optionalPeer({ name: 'basic-ftp', feature: 'FTP destinations', install: ['basic-ftp'] }, (): Promise<typeof BasicFtp> => import('basic-ftp'));

/** The reply code of a failed FTP command (550: no such file, or not allowed), if it was one. */
function replyCode(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'number' ? code : undefined;
}

/**
 * An FTP or FTPS server, over the `basic-ftp` package. Each object is uploaded to a hidden
 * temporary name in the folder, then renamed to its real name. FTP's rename replaces an existing
 * file on most servers, so the commit first takes a lock, a folder `.<name>.lock` made with `MKD`
 * (which fails when it exists), checks under it that no object of that name exists, renames, and
 * removes the lock: two backupkit writers never replace each other's object. A program that
 * writes that name by other means, between the check and the rename, is not held back.
 *
 * A crash never leaves a partial archive under a real name; the first `create()`, and `prune`,
 * remove the temporaries of writers that died (and locks older than a day). FTP has no fsync:
 * an object is as durable as the server makes a file it has closed.
 *
 * FTP carries one transfer at a time per connection: each call in progress has a connection of its
 * own, and one it finished with is kept idle for the next call for a few seconds (two at most).
 * With `secure`, the login and every transfer go over TLS (explicit FTPS, `AUTH TLS`).
 *
 * `basic-ftp` is an optional peer dependency, loaded on first use: install it beside backupkit.
 * @public
 */
export function ftp(options: FtpOptions): Destination {
  for (const option of ['host', 'user', 'path'] as const) {
    if (typeof options?.[option] !== 'string' || options[option] === '') throw new BackupError('INVALID_OPTIONS', `ftp() needs a \`${option}\``);
  }
  if (typeof options.password !== 'string') throw new BackupError('INVALID_OPTIONS', 'ftp() needs a `password`');
  const port = options.port ?? 21;
  if (!Number.isInteger(port) || port < 1 || port > 65_535) throw new BackupError('INVALID_OPTIONS', `ftp() port must be from 1 to 65535, not ${String(port)}`);
  const timeout = options.timeout ?? 30_000;
  if (!(Number.isFinite(timeout) && timeout > 0)) throw new BackupError('INVALID_OPTIONS', `ftp() timeout must be a positive number of milliseconds, not ${String(timeout)}`);
  const maxConnections = options.maxConnections ?? 4;
  if (!Number.isInteger(maxConnections) || maxConnections < 2) throw new BackupError('INVALID_OPTIONS', `ftp() maxConnections must be a whole number from 2, not ${String(maxConnections)}`);
  if (options.ca !== undefined && !options.secure) throw new BackupError('INVALID_OPTIONS', 'ftp() `ca` needs `secure: true`: without TLS no certificate is checked');
  const { host, user, password } = options;
  const secure = options.secure === true;
  const root = options.path.replace(/(.)\/+$/, '$1');
  const description = `${secure ? 'ftps' : 'ftp'}://${user}@${host}:${port}${root.startsWith('/') ? '' : '/~/'}${root}`;

  const failed = (action: string, cause: unknown, hint?: string) =>
    new BackupError('DESTINATION_FAILED', `${description}: ${action} failed: ${(cause as Error)?.message ?? String(cause)}`, {
      cause,
      hint: hint ?? hintFor(cause),
      transient: isTransient(cause),
    });
  const notFound = (name: string, cause?: unknown) => new BackupError('NOT_FOUND', `${description} has no ${name}`, { cause });
  const missingFolder = (cause: unknown) => failed('opening the folder', cause, `The folder ${root} does not exist on ${host}, or ${user} may not enter it: create it there first.`);

  /**
   * A logged-in connection whose working folder is `root`. `onMissingFolder` says what a missing
   * folder is: listing one is NOT_FOUND, as for a folder destination; writing to one is a failure.
   */
  const connect = async (onMissingFolder: (cause: unknown) => BackupError = missingFolder): Promise<Client> => {
    const { Client } = await loadSdk();
    const client = new Client(timeout);
    // access()'s steps, one by one, so that a refused AUTH TLS is told from a refused login.
    let step = 'connecting';
    try {
      await client.connect(host, port);
      if (secure) {
        step = 'starting TLS';
        // basic-ftp checks the certificate against `host`; SNI names a server by name, never by address.
        await client.useTLS({ host, ...(isIP(host) ? {} : { servername: host }), ...(options.ca === undefined ? {} : { ca: options.ca }) });
      }
      step = 'logging in';
      await client.sendIgnoringError('OPTS UTF8 ON');
      await client.login(user, password);
      await client.useDefaultSettings();
    } catch (cause) {
      client.close();
      if (step === 'starting TLS' && replyCode(cause) !== undefined) {
        throw failed(step, cause, 'The server does not offer explicit FTPS (AUTH TLS), and the password was not sent: turn TLS on there, or leave `secure` off on a network you trust.');
      }
      throw failed(step, cause);
    }
    try {
      await client.cd(root);
    } catch (cause) {
      client.close();
      throw replyCode(cause) === 550 ? onMissingFolder(cause) : failed('opening the folder', cause);
    }
    return client;
  };
  // Logging in costs a dozen round trips (more with TLS): a connection a call finished with is
  // kept a few seconds for the next one, so that listing reads its sidecars on few connections.
  // Idle, it does not keep the process alive. In use and idle, there are at most `maxConnections`.
  const idle: Client[] = [];
  const idleTimers = new Map<Client, NodeJS.Timeout>();
  let busy = 0;
  const waiting: (() => void)[] = [];
  const wakeOne = () => waiting.shift()?.();
  /** A logged-in connection in `root`: an idle one, a new one, or the next one free. */
  const acquire = async (onMissingFolder?: (cause: unknown) => BackupError): Promise<Client> => {
    for (;;) {
      for (let client = idle.pop(); client !== undefined; client = idle.pop()) {
        clearTimeout(idleTimers.get(client));
        idleTimers.delete(client);
        if (client.closed) continue; // the server closed it meanwhile
        client.ftp.socket.ref();
        busy++;
        return client;
      }
      if (busy < maxConnections) break;
      await new Promise<void>((resolve) => waiting.push(resolve));
    }
    busy++;
    try {
      return await connect(onMissingFolder);
    } catch (cause) {
      busy--;
      wakeOne();
      throw cause;
    }
  };
  /** Hands a connection back: kept idle if `reusable` (its last command succeeded), else closed. */
  const release = (client: Client, reusable: boolean) => {
    busy--;
    if (!reusable || client.closed) {
      client.close();
    } else {
      client.ftp.socket.unref();
      idle.push(client);
      const timer = setTimeout(() => {
        idleTimers.delete(client);
        idle.splice(idle.indexOf(client), 1);
        client.close();
      }, IDLE_MS);
      timer.unref();
      idleTimers.set(client, timer);
    }
    wakeOne();
  };
  /** Runs `fn` on a connection; failures other than BackupErrors become `action` failing. */
  const using = async <T>(action: string, fn: (client: Client) => Promise<T>): Promise<T> => {
    const client = await acquire();
    try {
      const result = await fn(client);
      release(client, true);
      return result;
    } catch (cause) {
      // A refusal the server answered (550) leaves the connection as good as it was.
      release(client, replyCode(cause) !== undefined || cause instanceof BackupError);
      throw cause instanceof BackupError ? cause : failed(action, cause);
    }
  };
  /** Whether a file of that name is in the folder (SIZE answers 550 for a missing one, and for a folder). */
  const exists = (client: Client, name: string) =>
    client.size(name).then(
      () => true,
      (cause: unknown) => {
        if (replyCode(cause) === 550) return false;
        throw cause;
      },
    );

  /** Temporaries whose writer is gone, and commit locks older than a day. */
  const abandoned = async (client: Client): Promise<string[]> => {
    const names: string[] = [];
    for (const info of await client.list()) {
      const tag = TEMPORARY.exec(info.name)?.[2];
      if (tag !== undefined && info.isFile) {
        // MDTM is to the second; a listing's date may be to the minute, in the server's time zone.
        const modifiedAt = await client.lastMod(info.name).catch(() => listedDate(info));
        if (isAbandoned(tag, modifiedAt)) names.push(info.name);
      } else if (LOCK.test(info.name) && info.isDirectory) {
        const takenAt = listedDate(info).getTime(); // 0: a date not read, taken as recent
        if (takenAt > 0 && Date.now() - takenAt > ABANDONED_AFTER_MS) names.push(info.name);
      }
    }
    return names;
  };
  const listLeftovers = (): Promise<string[]> => using('listing temporaries', abandoned);
  const removeLeftovers = (): Promise<string[]> =>
    using('removing temporaries', async (client) => {
      const removed: string[] = [];
      for (const name of await abandoned(client)) {
        const removal = LOCK.test(name) ? client.removeEmptyDir(name) : client.remove(name);
        if (await removal.then(() => true, () => false)) removed.push(name);
      }
      return removed;
    });
  let swept: Promise<string[]> | undefined;

  /** Under the lock `.<name>.lock`: refuses a taken name, renames the temporary, removes the lock. */
  const commitAs = async (client: Client, temporary: string, name: string): Promise<void> => {
    const lock = `.${name}.lock`;
    const taken = (cause?: unknown) => new BackupError('ALREADY_EXISTS', `${description} already holds ${name}, or another writer is committing it; it was not replaced`, { cause });
    try {
      await client.send(`MKD ${lock}`);
    } catch (cause) {
      if (replyCode(cause) !== 550) throw cause;
      // 550 is also "not allowed": only a lock or an object already there means the name is taken.
      const present = new Set((await client.list()).map((info) => info.name));
      if (present.has(lock) || present.has(name)) throw taken(cause);
      throw cause;
    }
    try {
      if (await exists(client, name)) throw taken();
      await client.rename(temporary, name);
    } finally {
      // A lock left by a broken connection holds only this name, and goes after a day.
      await client.removeEmptyDir(lock).catch(() => {});
    }
  };

  return {
    kind: 'ftp',
    description,
    capabilities: { deferredCommit: true },

    async create(name: string): Promise<Upload> {
      checkObjectName(name);
      // Best effort: a backup does not fail for want of tidying up; prune reports it.
      await (swept ??= removeLeftovers().catch(() => []));
      const client = await acquire();
      const temporary = `.${name}.${ownerTag()}.partial`;
      // basic-ftp pipes `body` into the data connection; `stream` stands in front of it so that a
      // failed transfer reaches the writer as this destination's own error.
      const body = new PassThrough({ highWaterMark: MIB });
      const stream = new Writable({
        highWaterMark: MIB,
        write(chunk: Buffer, _encoding, callback) {
          if (body.write(chunk)) return callback();
          const settle = () => {
            body.off('drain', settle);
            body.off('close', settle);
            callback(body.destroyed && !body.writableFinished ? failed(`uploading ${name}`, new Error('the transfer was closed')) : null);
          };
          body.on('drain', settle);
          body.on('close', settle);
        },
        final(callback) {
          body.end();
          callback();
        },
      });
      const transfer = client.uploadFrom(body, temporary);
      // basic-ftp starts reading `body` once the server has opened the file and the data
      // connection is up: a folder not writable, or a full disk, fails here rather than midway.
      try {
        await Promise.race([once(body, 'resume'), transfer]);
      } catch (cause) {
        release(client, false);
        throw failed(`creating ${name}`, cause);
      }
      const done = transfer.then(
        () => undefined,
        (cause: unknown) => {
          const error = failed(`uploading ${name}`, cause);
          if (!stream.destroyed) stream.destroy(error);
          throw error;
        },
      );
      done.catch(() => {}); // awaited by commit, or made moot by abort
      let finished = false;
      /**
       * Hands the connection back, once (for reuse after a commit, closed otherwise, as a transfer
       * may be under way); removes the temporary, on another connection, unless it became the object.
       */
      const finish = async (committed = false) => {
        if (finished) return;
        finished = true;
        release(client, committed);
        if (committed) return;
        // A server that went away leaves it: the next backup, or prune, removes it.
        await using(`removing ${temporary}`, (other) => other.remove(temporary)).catch(() => {});
      };
      return {
        stream,
        async commit() {
          try {
            await done;
            await commitAs(client, temporary, name);
          } catch (cause) {
            await finish();
            throw cause instanceof BackupError ? cause : failed(`committing ${name}`, cause);
          }
          await finish(true);
        },
        async abort() {
          stream.destroy();
          body.destroy();
          await finish();
        },
      };
    },

    async open(name: string, range?: ReadRange): Promise<Readable> {
      checkObjectName(name);
      const { start, end } = checkRange(range);
      const client = await acquire();
      let size: number;
      try {
        size = await client.size(name);
      } catch (cause) {
        release(client, replyCode(cause) !== undefined);
        if (replyCode(cause) === 550) throw notFound(name, cause);
        throw failed(`reading ${name}`, cause);
      }
      const stop = Math.min(end ?? size, size);
      if (start >= stop) {
        release(client, true);
        return Readable.from([]);
      }
      let left = stop - start;
      /** A range that ends before the file does: its transfer is closed once read. */
      const cut = stop < size;
      let owned = true;
      /** Hands the connection back once; it is reused only after a transfer the server completed. */
      const drop = (reusable: boolean) => {
        if (!owned) return;
        owned = false;
        release(client, reusable);
      };
      const out = new PassThrough({ highWaterMark: MIB });
      // Handed to basic-ftp, which pipes the data connection into it: its callbacks wait for `out`
      // to drain, so a slow restore slows the download instead of filling memory.
      const sink = new Writable({
        highWaterMark: MIB,
        write(chunk: Buffer, _encoding, callback) {
          if (left === 0) return callback();
          const piece = chunk.length > left ? chunk.subarray(0, left) : chunk;
          left -= piece.length;
          const more = out.write(piece);
          if (left === 0 && cut) {
            out.end();
            drop(false); // the rest of the file is not wanted: FTP stops a transfer by closing it
            return callback();
          }
          if (more) return callback();
          const settle = () => {
            out.off('drain', settle);
            out.off('close', settle);
            callback();
          };
          out.on('drain', settle);
          out.on('close', settle);
        },
      });
      client.downloadTo(sink, name, start).then(
        () => {
          drop(true);
          // The server's 226 arrived: the end of the file (also of one that shrank since SIZE).
          if (!out.writableEnded && !out.destroyed) out.end();
        },
        (cause: unknown) => {
          drop(false);
          if (left > 0 && !out.destroyed) out.destroy(failed(`reading ${name}`, cause));
        },
      );
      // A reader that stops early (a cancelled restore) closes the transfer.
      out.on('close', () => {
        if (left > 0) drop(false);
      });
      return out;
    },

    async *list(prefix = ''): AsyncIterable<StoredObject> {
      const client = await acquire((cause) => new BackupError('NOT_FOUND', `${description} does not exist`, { cause, hint: `Create ${root} on ${host}, or check the path.` }));
      let listed: FileInfo[];
      try {
        listed = await client.list();
      } catch (cause) {
        release(client, false);
        throw failed('listing', cause);
      }
      release(client, true);
      for (const info of listed) {
        if (!info.isFile || info.name.startsWith('.') || !info.name.startsWith(prefix)) continue;
        yield { name: info.name, size: info.size, modifiedAt: listedDate(info) };
      }
    },

    async remove(name: string) {
      checkObjectName(name);
      await using(`removing ${name}`, async (client) => {
        if (!(await exists(client, name))) throw notFound(name);
        await client.remove(name);
      });
    },

    removeLeftovers,
    listLeftovers,
  };
}

function hintFor(cause: unknown): string | undefined {
  const code = replyCode(cause);
  if (code === 530 && /encrypt|TLS|SSL/i.test((cause as Error).message)) return 'The server takes logins over FTPS only: set `secure: true` (an ftps:// URL).';
  if (code === 530) return 'The server refused the login: check the user and the password.';
  const errorCode = (cause as { code?: unknown } | undefined)?.code;
  if (typeof errorCode === 'string' && /CERT|SELF_SIGNED|ALTNAME|UNABLE_TO/.test(errorCode)) {
    return "The server's TLS certificate is not trusted: give its CA (or the certificate itself, when self-signed) as `ca` (`?ca=file` in a URL).";
  }
  if ((typeof errorCode === 'string' && NETWORK_ERRORS.has(errorCode)) || /Timeout/i.test((cause as Error)?.message ?? '')) {
    return 'The FTP server could not be reached, or stopped answering: check the host and port, and that it is running.';
  }
  return undefined;
}

/** Dropped connections and timeouts: the same call may succeed on a new connection. */
function isTransient(cause: unknown): boolean {
  const errorCode = (cause as { code?: unknown } | undefined)?.code;
  const message = (cause as Error)?.message ?? '';
  // basic-ftp reports a connection the server dropped by message alone (its code is then "0").
  if (/Timeout|closed connection unexpectedly|FIN packet|Socket closed due to transmission error/i.test(message)) return true;
  if (typeof errorCode === 'string') return NETWORK_ERRORS.has(errorCode);
  const code = replyCode(cause);
  // 421: service closing; 425/426: the data connection failed; 450-452: busy or out of space for now.
  return code === 421 || code === 425 || code === 426 || (code !== undefined && code >= 450 && code <= 452);
}

/**
 * The parts of an `ftp://user@host:port/path` or `ftps://...` URL, as the command line takes it:
 * the path is absolute, or relative to the login folder when it starts with `/~/`; `ftps:` is
 * explicit FTPS. The password comes from elsewhere: a URL that holds one is refused.
 * @public
 */
export function parseFtpUrl(url: string): Pick<FtpOptions, 'host' | 'port' | 'user' | 'path' | 'secure'> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (cause) {
    throw new BackupError('INVALID_OPTIONS', `${JSON.stringify(url)} is not an ftp://user@host:port/path URL`, { cause });
  }
  if ((parsed.protocol !== 'ftp:' && parsed.protocol !== 'ftps:') || parsed.username === '' || parsed.hostname === '' || parsed.pathname.length <= 1) {
    throw new BackupError('INVALID_OPTIONS', `${JSON.stringify(url)} is not an ftp://user@host:port/path URL`, { hint: 'Name the user, the host and the folder: ftps://backup@example.com/srv/backups.' });
  }
  if (parsed.password !== '') {
    throw new BackupError('INVALID_OPTIONS', `${parsed.protocol}//${parsed.username}:***@${parsed.host}: a password does not belong in the URL`, {
      hint: 'Command lines are seen by every user of the machine and kept in shell histories: set BACKUPKIT_FTP_PASSWORD instead.',
    });
  }
  const pathname = decodeURIComponent(parsed.pathname);
  return {
    host: parsed.hostname.replace(/^\[(.*)\]$/, '$1'),
    ...(parsed.port === '' ? {} : { port: Number(parsed.port) }),
    user: decodeURIComponent(parsed.username),
    path: pathname.startsWith('/~/') ? pathname.slice(3) : pathname,
    secure: parsed.protocol === 'ftps:',
  };
}
