import { homedir } from 'node:os';
import { posix } from 'node:path';
import { Readable, Writable } from 'node:stream';
import type * as Ssh2 from 'ssh2';
import type { Client, SFTPWrapper } from 'ssh2';
import { BackupError } from '../../errors.js';
import type { Destination, ReadRange, StoredObject, Upload } from '../../types.js';
import { isAbandoned, ownerTag } from '../../util/leftovers.js';
import { optionalPeer } from '../../util/peers.js';
import { checkObjectName } from '../object-name.js';
import { checkRange } from '../range.js';
import { fingerprint, isAccepted, parseHostKey, readKnownHosts, type AcceptedKeys } from './host-key.js';

/**
 * Options of {@link sftp}. Give `privateKey` or `password`, and the server's `hostKey` or a
 * `knownHosts` file that lists it.
 * @public
 */
export interface SftpOptions {
  /** The server's name or address. */
  host: string;
  /** Default 22. */
  port?: number;
  /** The user to log in as. */
  username: string;
  /** The user's private key (OpenSSH or PEM text), as `ssh-keygen` writes it. Never echoed. */
  privateKey?: string | Buffer;
  /** The passphrase of an encrypted `privateKey`. Never echoed. */
  passphrase?: string;
  /** The user's password, when the server accepts passwords. Never echoed. */
  password?: string;
  /** The folder archives go to on the server: absolute, or relative to the user's login folder. It must exist. */
  path: string;
  /**
   * The server's host public key, `ssh-ed25519 AAAA...` (a line of the server's
   * `/etc/ssh/ssh_host_*_key.pub`) or its `SHA256:...` fingerprint (`ssh-keygen -lf`). Any other key
   * is refused.
   */
  hostKey?: string;
  /**
   * Without `hostKey`: a known_hosts file that lists the server (plain or hashed names,
   * `[host]:port` off port 22); default `~/.ssh/known_hosts`. A host it does not list is refused:
   * add it with `ssh-keyscan -p <port> <host> >> <file>`, after checking the fingerprint.
   */
  knownHosts?: string;
  /** Milliseconds to wait for the connection and login; default 20 000. */
  connectTimeout?: number;
}

/** `.<name>.<owner tag>.partial`: see util/leftovers.ts. */
const TEMPORARY = /^\.(.+)\.([^.]+)\.partial$/;
const MIB = 1024 * 1024;
/** OpenSSH serves at most 256 KiB per read request. */
const READ_CHUNK = 256 * 1024;
/** Read requests kept in flight while restoring. */
const READ_AHEAD = 8;
/** SFTP status codes (draft-ietf-secsh-filexfer-02). */
const SFTP_EOF = 1;
const SFTP_NO_SUCH_FILE = 2;
const NETWORK_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'EPIPE']);

/** ssh2, imported when an SFTP destination first connects. */
const loadSdk = optionalPeer({ name: 'ssh2', feature: 'SFTP destinations', install: ['ssh2'] }, (): Promise<typeof Ssh2> => import('ssh2'));

interface Session {
  client: Client;
  sftp: SFTPWrapper;
}

/** Channels whose connection closed: ssh2 never answers a request made on one, so none is made. */
const closed = new WeakSet<SFTPWrapper>();

/**
 * Calls an ssh2 callback-style method of `channel`; one that throws (an extension the server
 * lacks) rejects, and so does any call once the connection closed.
 */
function call<T = void>(channel: SFTPWrapper, fn: (callback: (error: Error | null | undefined, value?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    if (closed.has(channel)) return reject(new Error('the connection to the server is closed'));
    try {
      fn((error, value) => (error ? reject(error) : resolve(value as T)));
    } catch (error) {
      reject(error);
    }
  });
}

function sftpCode(error: unknown): unknown {
  return (error as { code?: unknown } | undefined)?.code;
}

/**
 * An SFTP server (OpenSSH or any SFTP v3 server), over the `ssh2` package. Each object is written
 * to a hidden temporary name in the folder, owner-only (`0600`), then fsynced (where the server
 * offers `fsync@openssh.com`) and linked to its real name with `hardlink@openssh.com`, which fails
 * rather than replace an object of that name; servers without it get a plain SFTP rename, which
 * the protocol also defines as failing when the name is taken. A crash never leaves a partial
 * archive under a real name; the first `create()`, and `prune`, remove the temporaries of writers
 * that died.
 *
 * The server's host key is checked before logging in, against `hostKey` or a known_hosts file: a
 * changed or unknown key is refused with `DESTINATION_FAILED`. One SSH connection serves every
 * call in progress, and closes when none is left.
 *
 * `ssh2` is an optional peer dependency, loaded on first use: install it beside backupkit.
 * @public
 */
export function sftp(options: SftpOptions): Destination {
  for (const option of ['host', 'username', 'path'] as const) {
    if (typeof options?.[option] !== 'string' || options[option] === '') throw new BackupError('INVALID_OPTIONS', `sftp() needs a \`${option}\``);
  }
  if (options.privateKey === undefined && options.password === undefined) {
    throw new BackupError('INVALID_OPTIONS', 'sftp() needs a `privateKey` or a `password`');
  }
  const port = options.port ?? 22;
  if (!Number.isInteger(port) || port < 1 || port > 65_535) throw new BackupError('INVALID_OPTIONS', `sftp() port must be from 1 to 65535, not ${String(port)}`);
  const connectTimeout = options.connectTimeout ?? 20_000;
  if (!(Number.isFinite(connectTimeout) && connectTimeout > 0)) {
    throw new BackupError('INVALID_OPTIONS', `sftp() connectTimeout must be a positive number of milliseconds, not ${String(connectTimeout)}`);
  }
  const { host, username } = options;
  const root = options.path.replace(/(.)\/+$/, '$1');
  const knownHosts = options.knownHosts ?? posix.join(homedir(), '.ssh', 'known_hosts');
  const description = `sftp://${username}@${host}:${port}${root.startsWith('/') ? '' : '/~/'}${root}`;
  const at = (name: string) => posix.join(root, name);

  const failed = (action: string, cause: unknown, hint?: string) =>
    new BackupError('DESTINATION_FAILED', `${description}: ${action} failed: ${(cause as Error)?.message ?? String(cause)}`, { cause, hint: hint ?? hintFor(cause), transient: isTransient(cause) });
  const notFound = (name: string, cause: unknown) => new BackupError('NOT_FOUND', `${description} has no ${name}`, { cause });
  const folderMissing = (cause: unknown) => failed('opening the folder', cause, `The folder ${root} does not exist on ${host}: create it there first.`);

  const acceptedKeys = async (): Promise<AcceptedKeys> => {
    if (options.hostKey !== undefined) return parseHostKey(options.hostKey);
    try {
      return await readKnownHosts(knownHosts, host, port);
    } catch (cause) {
      throw failed(`reading ${knownHosts}`, cause, `Give the server's hostKey, or a knownHosts file that lists ${host}.`);
    }
  };

  const connect = async (): Promise<Session> => {
    const { Client } = await loadSdk();
    const accepted = await acceptedKeys();
    return new Promise((resolve, reject) => {
      const client = new Client();
      let refused: Buffer | undefined;
      client.on('error', (cause) => {
        if (refused === undefined) return reject(failed('connecting', cause));
        reject(
          new BackupError('DESTINATION_FAILED', `${description}: the server's host key ${fingerprint(refused)} is not the one expected; nothing was sent`, {
            cause,
            hint: `The server is not the one you trust, or its key changed. If it changed for a reason you know, check the new fingerprint (ssh-keygen -lf on the server) and update ${options.hostKey !== undefined ? 'hostKey' : knownHosts}.`,
          }),
        );
      });
      client.on('close', () => reject(failed('connecting', new Error('the server closed the connection'))));
      client.on('ready', () => {
        client.sftp((cause, channel) => {
          if (cause) {
            client.end();
            return reject(failed('starting SFTP', cause, `Check that ${host} serves the SFTP subsystem.`));
          }
          const close = () => closed.add(channel);
          channel.once('close', close);
          client.once('close', close);
          resolve({ client, sftp: channel });
        });
      });
      client.connect({
        host,
        port,
        username,
        ...(options.privateKey === undefined ? {} : { privateKey: options.privateKey }),
        ...(options.passphrase === undefined ? {} : { passphrase: options.passphrase }),
        ...(options.password === undefined ? {} : { password: options.password }),
        readyTimeout: connectTimeout,
        // A server that stops answering fails the operation in about 30 s instead of hanging it.
        keepaliveInterval: 10_000,
        keepaliveCountMax: 3,
        hostVerifier: (key: Buffer) => {
          if (isAccepted(accepted, key)) return true;
          refused = key;
          return false;
        },
      });
    });
  };

  // One connection for every call in progress: `users` counts them; the last one out closes it.
  let session: Promise<Session> | undefined;
  let users = 0;
  const acquire = async (): Promise<SFTPWrapper> => {
    users++;
    if (session === undefined) {
      const created = connect();
      session = created;
      created.then(
        ({ client }) =>
          client.once('close', () => {
            if (session === created) session = undefined; // the server went away: the next call reconnects
          }),
        () => {},
      );
    }
    const current = session;
    try {
      return (await current).sftp;
    } catch (cause) {
      users--;
      if (session === current) session = undefined;
      throw cause;
    }
  };
  const release = () => {
    if (--users > 0 || session === undefined) return;
    const closing = session;
    session = undefined;
    void closing.then(({ client }) => client.end(), () => {});
  };
  /** Runs `fn` on the shared connection. */
  const using = async <T>(fn: (channel: SFTPWrapper) => Promise<T>): Promise<T> => {
    const channel = await acquire();
    try {
      return await fn(channel);
    } finally {
      release();
    }
  };

  /** Temporaries whose writer is gone. */
  const abandoned = async (channel: SFTPWrapper): Promise<string[]> => {
    const names: string[] = [];
    for (const { filename, attrs } of await call<{ filename: string; attrs: { mtime: number } }[]>(channel, (cb) => channel.readdir(root, cb))) {
      const tag = TEMPORARY.exec(filename)?.[2];
      if (tag !== undefined && isAbandoned(tag, new Date(attrs.mtime * 1000))) names.push(filename);
    }
    return names;
  };
  const listLeftovers = (): Promise<string[]> =>
    using(abandoned).catch((cause: unknown) => {
      throw cause instanceof BackupError ? cause : failed('listing temporaries', cause);
    });
  const removeLeftovers = (): Promise<string[]> =>
    using(async (channel) => {
      const removed: string[] = [];
      for (const name of await abandoned(channel)) {
        if (await call(channel, (cb) => channel.unlink(at(name), cb)).then(() => true, () => false)) removed.push(name);
      }
      return removed;
    }).catch((cause: unknown) => {
      throw cause instanceof BackupError ? cause : failed('removing temporaries', cause);
    });
  let swept: Promise<string[]> | undefined;

  return {
    kind: 'sftp',
    description,
    capabilities: { deferredCommit: true },

    async create(name: string): Promise<Upload> {
      checkObjectName(name);
      const channel = await acquire();
      const temporary = at(`.${name}.${ownerTag()}.partial`);
      let handle: Buffer;
      try {
        // Best effort: a backup does not fail for want of tidying up; prune reports it.
        await (swept ??= removeLeftovers().catch(() => []));
        handle = await call<Buffer>(channel, (cb) => channel.open(temporary, 'wx', { mode: 0o600 }, cb));
      } catch (cause) {
        release();
        if (sftpCode(cause) === SFTP_NO_SUCH_FILE) throw folderMissing(cause);
        throw failed(`creating ${name}`, cause);
      }
      let position = 0;
      const writeAt = (chunk: Buffer, callback: (error?: Error | null) => void) => {
        const offset = position;
        position += chunk.length;
        call(channel, (cb) => channel.write(handle, chunk, 0, chunk.length, offset, cb)).then(
          () => callback(null),
          (cause: unknown) => callback(failed(`uploading ${name}`, cause)),
        );
      };
      const stream = new Writable({
        highWaterMark: MIB,
        write: (chunk: Buffer, _encoding, callback) => writeAt(chunk, callback),
        // Several chunks in flight at once: one round trip per chunk would cap the throughput.
        writev: (chunks, callback) => {
          let left = chunks.length;
          let failure: Error | null | undefined;
          for (const { chunk } of chunks) {
            writeAt(chunk as Buffer, (error) => {
              failure ??= error;
              if (--left === 0) callback(failure);
            });
          }
        },
      });
      let finished = false;
      /** Closes the handle and the connection, once; removes the temporary unless it became the object. */
      const finish = async (keepTemporary = false) => {
        if (finished) return;
        finished = true;
        await call(channel, (cb) => channel.close(handle, cb)).catch(() => {});
        if (!keepTemporary) await call(channel, (cb) => channel.unlink(temporary, cb)).catch(() => {});
        release();
      };
      return {
        stream,
        async commit() {
          const target = at(name);
          try {
            await call(channel, (cb) => channel.ext_openssh_fsync(handle, cb)).catch((cause: unknown) => {
              if (!/does not support/.test((cause as Error).message)) throw cause;
            });
            await call(channel, (cb) => channel.close(handle, cb));
          } catch (cause) {
            await finish();
            throw failed(`committing ${name}`, cause);
          }
          try {
            try {
              await call(channel, (cb) => channel.ext_openssh_hardlink(temporary, target, cb));
            } catch (cause) {
              if (!/does not support/.test((cause as Error).message)) throw cause;
              await call(channel, (cb) => channel.rename(temporary, target, cb));
            }
          } catch (cause) {
            const taken = await call<unknown>(channel, (cb) => channel.stat(target, cb)).then(() => true, () => false);
            await finish();
            if (taken) throw new BackupError('ALREADY_EXISTS', `${description} already holds ${name}; it was not replaced`, { cause });
            throw failed(`committing ${name}`, cause);
          }
          await finish(); // a leftover at worst, removed by a later run
        },
        async abort() {
          stream.destroy();
          await finish();
        },
      };
    },

    async open(name: string, range?: ReadRange): Promise<Readable> {
      checkObjectName(name);
      const { start, end = Infinity } = checkRange(range);
      const channel = await acquire();
      let handle: Buffer;
      try {
        handle = await call<Buffer>(channel, (cb) => channel.open(at(name), 'r', cb));
      } catch (cause) {
        release();
        if (sftpCode(cause) === SFTP_NO_SUCH_FILE) throw notFound(name, cause);
        throw failed(`reading ${name}`, cause);
      }
      let position = start; // of the next byte to push
      let requested = position; // of the next byte to ask for
      /** Reads asked for and not yet pushed, in order: one at a time would cap a restore at one chunk per round trip. */
      const ahead: { want: number; bytes: Promise<Buffer> }[] = [];
      /** Forgets the reads in flight; their answers (or the failure of a closed connection) go unheeded. */
      const dropAhead = () => {
        for (const dropped of ahead.splice(0)) dropped.bytes.catch(() => {});
      };
      const readAt = (offset: number, want: number) =>
        call<Buffer>(channel, (cb) => channel.read(handle, Buffer.allocUnsafe(want), 0, want, offset, (cause, bytes, buffer) => cb(cause, bytes > 0 ? buffer.subarray(0, bytes) : Buffer.alloc(0)))).catch((cause: unknown) => {
          if (sftpCode(cause) === SFTP_EOF) return Buffer.alloc(0);
          throw cause;
        });
      return new Readable({
        highWaterMark: MIB,
        read() {
          while (ahead.length < READ_AHEAD && requested < end) {
            const want = Math.min(READ_CHUNK, end - requested);
            ahead.push({ want, bytes: readAt(requested, want) });
            requested += want;
          }
          const next = ahead.shift();
          if (next === undefined) return void this.push(null);
          next.bytes.then(
            (bytes) => {
              if (bytes.length === 0) return void this.push(null);
              position += bytes.length;
              if (bytes.length < next.want) {
                // A short read: what was asked for beyond it is asked again, from where it stopped.
                dropAhead();
                requested = position;
              }
              this.push(bytes);
            },
            (cause: unknown) => this.destroy(failed(`reading ${name}`, cause)),
          );
        },
        destroy(error, callback) {
          dropAhead();
          // Not awaited: on a connection that died the close would never be answered.
          try {
            channel.close(handle, () => {});
          } catch {
            // the channel is gone, and the handle with it
          }
          release();
          callback(error);
        },
      });
    },

    async *list(prefix = ''): AsyncIterable<StoredObject> {
      let entries: { filename: string; attrs: { mode: number; size: number; mtime: number } }[];
      try {
        entries = await using((channel) => call(channel, (cb) => channel.readdir(root, cb)));
      } catch (cause) {
        // A mistyped path must not read as "no backups": the folder itself is missing.
        if (sftpCode(cause) === SFTP_NO_SUCH_FILE) throw new BackupError('NOT_FOUND', `${description} does not exist`, { cause, hint: `Create ${root} on ${host}, or check the path.` });
        throw cause instanceof BackupError ? cause : failed('listing', cause);
      }
      for (const { filename, attrs } of entries) {
        if (filename.startsWith('.') || !filename.startsWith(prefix) || (attrs.mode & 0o170000) !== 0o100000) continue;
        yield { name: filename, size: attrs.size, modifiedAt: new Date(attrs.mtime * 1000) };
      }
    },

    async remove(name: string) {
      checkObjectName(name);
      try {
        await using((channel) => call(channel, (cb) => channel.unlink(at(name), cb)));
      } catch (cause) {
        if (sftpCode(cause) === SFTP_NO_SUCH_FILE) throw notFound(name, cause);
        throw cause instanceof BackupError ? cause : failed(`removing ${name}`, cause);
      }
    },

    removeLeftovers,
    listLeftovers,
  };
}

function hintFor(cause: unknown): string | undefined {
  if ((cause as { level?: string } | undefined)?.level === 'client-authentication') {
    return 'The server refused the login: check the username, and that the private key is authorized (authorized_keys) or the password is right.';
  }
  const code = sftpCode(cause);
  if ((typeof code === 'string' && NETWORK_ERRORS.has(code)) || /Timed out/i.test((cause as Error)?.message ?? '')) {
    return 'The SSH server could not be reached: check the host and port, and that it is running.';
  }
  return undefined;
}

/**
 * Dropped or refused connections and timeouts: the same call may succeed on a new connection.
 * A refused login or host key is never one (ssh2 tells them by `level`, and the host key failure
 * is not made by `failed`).
 */
function isTransient(cause: unknown): boolean {
  const { level } = (cause as { level?: string } | undefined) ?? {};
  if (level === 'client-authentication' || level === 'handshake') return false;
  const code = sftpCode(cause);
  if (typeof code === 'string') return NETWORK_ERRORS.has(code);
  return level === 'client-timeout' || /Timed out|Keepalive timeout|connection to the server is closed|server closed the connection|No response from server/i.test((cause as Error)?.message ?? '');
}

/**
 * The parts of an `sftp://user@host:port/path` URL, as the command line takes it: the path is
 * absolute, or relative to the login folder when it starts with `/~/`. The key or password come
 * from elsewhere.
 * @public
 */
export function parseSftpUrl(url: string): Pick<SftpOptions, 'host' | 'port' | 'username' | 'path'> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (cause) {
    throw new BackupError('INVALID_OPTIONS', `${JSON.stringify(url)} is not an sftp://user@host:port/path URL`, { cause });
  }
  if (parsed.protocol !== 'sftp:' || parsed.username === '' || parsed.hostname === '' || parsed.pathname.length <= 1) {
    throw new BackupError('INVALID_OPTIONS', `${JSON.stringify(url)} is not an sftp://user@host:port/path URL`, { hint: 'Name the user, the host and the folder: sftp://backup@example.com/srv/backups.' });
  }
  const pathname = decodeURIComponent(parsed.pathname);
  return {
    host: parsed.hostname.replace(/^\[(.*)\]$/, '$1'),
    ...(parsed.port === '' ? {} : { port: Number(parsed.port) }),
    username: decodeURIComponent(parsed.username),
    path: pathname.startsWith('/~/') ? pathname.slice(3) : pathname,
  };
}
