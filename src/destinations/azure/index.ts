import { randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import type * as AzureSdk from '@azure/storage-blob';
import type { BlobItem, ContainerClient } from '@azure/storage-blob';
import { BackupError } from '../../errors.js';
import type { Destination, Lease, LeaseOptions, ReadRange, StoredObject, Upload } from '../../types.js';
import { takeVersioned, versionOf, type VersionedObject } from '../../util/lease.js';
import { optionalPeer } from '../../util/peers.js';
import { checkObjectName } from '../object-name.js';
import { checkRange } from '../range.js';
import { BlockWriter } from './block-writer.js';

/**
 * An application's own `BlobServiceClient` of `@azure/storage-blob`. Declared here so that
 * backupkit's types do not need the Azure SDK in an application that does not use Azure.
 * @public
 */
export interface AzureServiceClientLike {
  /** A client of one container. */
  getContainerClient(containerName: string): object;
}

/**
 * Options of {@link azure}. Give `connectionString`, or `account` with `credential`, or `client`.
 * @public
 */
export interface AzureOptions {
  /** The container; it must exist. */
  container: string;
  /** A folder inside the container, such as `backups/app/`. */
  prefix?: string;
  /**
   * A storage account connection string (`DefaultEndpointsProtocol=https;AccountName=...;AccountKey=...`
   * or with a `SharedAccessSignature`), as the Azure portal shows it. Never echoed.
   */
  connectionString?: string;
  /** The storage account name, served at `https://<account>.blob.core.windows.net`; needs `credential`. */
  account?: string;
  /**
   * With `account`: a `TokenCredential` (such as `@azure/identity`'s `DefaultAzureCredential`), a
   * `StorageSharedKeyCredential` or an `AnonymousCredential` of `@azure/storage-blob`.
   */
  credential?: object;
  /** Your application's own `BlobServiceClient`; the options above except `container` and `prefix` are then ignored. */
  client?: AzureServiceClientLike;
  /** Bytes per staged block, from 1 MiB to 4000 MiB; default 8 MiB. Memory is about blockSize x (concurrency + 1). */
  blockSize?: number;
  /** Blocks uploaded at once; default 4. */
  concurrency?: number;
  /** Attempts per request, with exponential backoff, for transient errors; default 5. Ignored with `client`. */
  maxAttempts?: number;
  /**
   * Milliseconds a call to the service may take, its retries included (a block's upload, a commit,
   * a page of a listing, a download until its first byte), and a download being read may wait
   * for its next bytes, before it fails with `DESTINATION_FAILED`; default 120 000, so a frozen
   * server fails the operation instead of hanging it. Such failures, dropped connections and
   * server errors are marked `transient`, for {@link withRetry}. Keep it above the time a block
   * takes on your slowest link, or lower `blockSize`.
   */
  requestTimeout?: number;
  /**
   * Milliseconds after which blocks staged under `prefix` and never committed are taken as left by
   * a writer that died, and discarded by the next backup or prune; default 24 hours. Keep it above
   * your longest backup.
   */
  abandonedUploadAge?: number;
}

const MIB = 1024 * 1024;
const DEFAULT_BLOCK_SIZE = 8 * MIB;
const MAX_BLOCK_SIZE = 4000 * MIB;
/** An Azure limit: a blob holds at most this many blocks. */
const MAX_BLOCKS = 50_000;
const DEFAULT_ABANDONED_UPLOAD_AGE_MS = 24 * 3_600_000;
const DEFAULT_REQUEST_TIMEOUT_MS = 120_000;

/** The Azure SDK, imported when an Azure destination is first used. */
const loadSdk = optionalPeer(
  { name: '@azure/storage-blob', feature: 'Azure destinations', install: ['@azure/storage-blob'] },
  (): Promise<typeof AzureSdk> => import('@azure/storage-blob'),
);

/**
 * Azure Blob Storage. Archives stream up as staged blocks, at most `concurrency` at once, and
 * become visible only when `commit()` commits the block list, all at once; the commit is
 * conditional (`If-None-Match: *`), so an existing blob is never replaced (`ALREADY_EXISTS`).
 * Restores stream straight from the container.
 *
 * An aborted upload discards its staged blocks (by committing an empty block list under its name
 * and deleting that empty blob at once, the only way Azure offers). Blocks left by a writer that
 * died are never listed; the first `create()`, and `prune`, discard them once older than
 * `abandonedUploadAge` (Azure itself drops uncommitted blocks after a week).
 *
 * Its leases (`startBackup({ lease })`) are one small blob, written with `If-None-Match: *` to
 * take a free lease and `If-Match: <etag>` to renew it or take over an expired one (not Azure's
 * own blob leases, whose longest finite term is 60 s and which carry no fencing token).
 *
 * `@azure/storage-blob` is an optional peer dependency, loaded on first use: install it beside
 * backupkit.
 * @public
 */
export function azure(options: AzureOptions): Destination {
  if (typeof options?.container !== 'string' || options.container === '') {
    throw new BackupError('INVALID_OPTIONS', 'azure() needs a `container`');
  }
  if (options.client === undefined && options.connectionString === undefined && (options.account === undefined || options.credential === undefined)) {
    throw new BackupError('INVALID_OPTIONS', 'azure() needs a `connectionString`, an `account` with a `credential`, or a `client`');
  }
  const blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE;
  if (!Number.isInteger(blockSize) || blockSize < MIB || blockSize > MAX_BLOCK_SIZE) {
    throw new BackupError('INVALID_OPTIONS', `azure() blockSize must be from ${MIB} to ${MAX_BLOCK_SIZE} bytes, not ${String(blockSize)}`);
  }
  for (const option of ['concurrency', 'maxAttempts', 'requestTimeout', 'abandonedUploadAge'] as const) {
    const value = options[option];
    if (value !== undefined && !(Number.isInteger(value) && value > 0)) {
      throw new BackupError('INVALID_OPTIONS', `azure() ${option} must be a positive integer, not ${String(value)}`);
    }
  }
  const concurrency = options.concurrency ?? 4;
  const abandonedUploadAge = options.abandonedUploadAge ?? DEFAULT_ABANDONED_UPLOAD_AGE_MS;
  const prefix = options.prefix ? options.prefix.replace(/^\/+/, '').replace(/\/*$/, '/') : '';
  const description = `azure://${options.container}/${prefix}`;
  const key = (name: string) => `${prefix}${name}`;

  let connecting: Promise<ContainerClient> | undefined;
  const container = (): Promise<ContainerClient> =>
    (connecting ??= loadSdk().then((sdk) => {
      const pipeline = { retryOptions: { maxTries: options.maxAttempts ?? 5 } };
      const service =
        (options.client as AzureSdk.BlobServiceClient | undefined) ??
        (options.connectionString !== undefined
          ? sdk.BlobServiceClient.fromConnectionString(options.connectionString, pipeline)
          : new sdk.BlobServiceClient(`https://${options.account}.blob.core.windows.net`, options.credential as AzureSdk.StorageSharedKeyCredential, pipeline));
      return service.getContainerClient(options.container);
    })).catch((cause: unknown) => {
      connecting = undefined;
      throw cause instanceof BackupError ? cause : failed('connecting', cause);
    });

  const requestTimeout = options.requestTimeout ?? DEFAULT_REQUEST_TIMEOUT_MS;
  /**
   * Runs one call, failing it after `requestTimeout` and aborting `watchdog`, which the call's
   * requests carry: the SDK's own `tryTimeout` is only a hint to the server, and a frozen server
   * would hang the call forever.
   */
  const timed = <T>(call: (abortSignal: AbortSignal) => Promise<T>, watchdog = new AbortController()): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new TimeoutError(`no answer within ${requestTimeout} ms`));
        watchdog.abort();
      }, requestTimeout);
      call(watchdog.signal)
        .then(resolve, reject)
        .finally(() => clearTimeout(timer));
    });
  /** The pages of a listing, each timed. */
  async function* pages(client: ContainerClient, listOptions: { prefix: string; includeUncommitedBlobs?: boolean }): AsyncIterable<BlobItem[]> {
    const watchdog = new AbortController();
    const iterator = client.listBlobsFlat({ ...listOptions, abortSignal: watchdog.signal }).byPage();
    for (;;) {
      const page = await timed(() => iterator.next(), watchdog);
      if (page.done) return;
      yield page.value.segment.blobItems;
    }
  }
  const failed = (action: string, cause: unknown) =>
    new BackupError('DESTINATION_FAILED', `${description}: ${action} failed: ${errorText(cause)}`, { cause, hint: hintFor(cause, options.container), transient: isTransient(cause) });
  const notFound = (name: string, cause: unknown) => new BackupError('NOT_FOUND', `${description} has no ${name}`, { cause });
  const exists = (name: string, cause?: unknown) => new BackupError('ALREADY_EXISTS', `${description} already holds ${name}; it was not replaced`, { cause });

  /** Discards the blocks staged under `name` and never committed; a committed blob of that name is left alone. */
  const discardStaged = async (client: ContainerClient, name: string): Promise<void> => {
    const blob = client.getBlockBlobClient(key(name));
    try {
      const { etag } = await timed((abortSignal) => blob.commitBlockList([], { conditions: { ifNoneMatch: '*' }, abortSignal }));
      await timed((abortSignal) => blob.delete({ conditions: { ifMatch: etag }, abortSignal }));
    } catch (cause) {
      if (!isTaken(cause)) throw cause; // committed by another writer, whose commit discarded our blocks
    }
  };

  /** Names under the prefix that hold only uncommitted blocks older than `abandonedUploadAge`. */
  const abandoned = async (client: ContainerClient): Promise<string[]> => {
    const committed = new Set<string>();
    for await (const page of pages(client, { prefix })) for (const blob of page) committed.add(blob.name);
    const oldest = Date.now() - abandonedUploadAge;
    const names: string[] = [];
    for await (const page of pages(client, { prefix, includeUncommitedBlobs: true })) {
      for (const blob of page) {
        const name = blob.name.slice(prefix.length);
        if (committed.has(blob.name) || name.includes('/') || blob.properties.lastModified.getTime() > oldest) continue;
        names.push(name);
      }
    }
    return names;
  };

  const listLeftovers = async (): Promise<string[]> => {
    try {
      return await abandoned(await container());
    } catch (cause) {
      throw failed('listing abandoned blocks', cause);
    }
  };

  const removeLeftovers = async (): Promise<string[]> => {
    try {
      const client = await container();
      const names = await abandoned(client);
      for (const name of names) await discardStaged(client, name);
      return names;
    } catch (cause) {
      throw failed('discarding abandoned blocks', cause);
    }
  };
  let swept: Promise<string[]> | undefined;

  return {
    kind: 'azure',
    description,
    capabilities: { deferredCommit: true },

    async create(name: string): Promise<Upload> {
      checkObjectName(name);
      const client = await container();
      // Best effort: a backup does not fail for want of tidying up; prune reports it.
      await (swept ??= removeLeftovers().catch(() => []));
      const blob = client.getBlockBlobClient(key(name));
      // Blocks staged under one name are shared by every writer of it: a random writer tag keeps
      // ours apart. Every id of a blob must have the same length.
      const writer = randomBytes(8).toString('hex');
      const blockId = (index: number) => Buffer.from(`${writer}-${String(index).padStart(6, '0')}`).toString('base64');
      const stream = new BlockWriter(
        async (index, block) => {
          if (index >= MAX_BLOCKS) throw new BackupError('DESTINATION_FAILED', `${description}: ${name} needs more than ${MAX_BLOCKS} blocks`, { hint: 'Raise blockSize: a blob holds at most 50 000 blocks.' });
          try {
            await timed((abortSignal) => blob.stageBlock(blockId(index), block, block.length, { abortSignal }));
          } catch (cause) {
            throw failed(`uploading ${name}`, cause);
          }
        },
        blockSize,
        concurrency,
      );
      let committed: string | undefined; // the etag
      return {
        stream,
        async commit() {
          try {
            const ids = Array.from({ length: stream.blocks }, (_, index) => blockId(index));
            ({ etag: committed } = await timed((abortSignal) => blob.commitBlockList(ids, { conditions: { ifNoneMatch: '*' }, abortSignal })));
          } catch (cause) {
            // A rival's commit discards our blocks, so a late commit may find them gone instead.
            if (isTaken(cause) || (isInvalidBlockList(cause) && (await timed((abortSignal) => blob.exists({ abortSignal })).catch(() => false)))) throw exists(name, cause);
            throw failed(`committing ${name}`, cause);
          }
        },
        async abort() {
          stream.destroy();
          await stream.settled();
          try {
            if (committed !== undefined) await timed((abortSignal) => blob.delete({ conditions: { ifMatch: committed }, abortSignal }));
            else if (stream.blocks > 0) await discardStaged(client, name);
          } catch (cause) {
            throw failed(`discarding ${name}`, cause);
          }
        },
      };
    },

    async open(name: string, range?: ReadRange): Promise<Readable> {
      checkObjectName(name);
      const { start, end } = checkRange(range);
      const client = await container();
      try {
        const length = end === undefined ? undefined : end - start;
        const response = await timed((abortSignal) => client.getBlockBlobClient(key(name)).download(start, length, { abortSignal }));
        const body = response.readableStreamBody as Readable;
        const out = new PassThrough({ highWaterMark: MIB });
        // The body is timed only while it flows: a server that stops sending midway fails the read,
        // a restore that reads slowly (the body paused by backpressure) does not.
        let idle: NodeJS.Timeout | undefined;
        const stalled = () => body.destroy(new TimeoutError(`no bytes within ${requestTimeout} ms`));
        const watch = () => {
          clearTimeout(idle);
          idle = body.isPaused() ? undefined : setTimeout(stalled, requestTimeout);
        };
        const unwatch = () => clearTimeout(idle);
        body.on('data', watch).on('resume', watch).on('pause', unwatch).on('end', unwatch).on('close', unwatch);
        body.on('error', (cause) => out.destroy(failed(`reading ${name}`, cause)));
        out.on('close', () => body.destroy());
        return body.pipe(out);
      } catch (cause) {
        if (isMissingBlob(cause)) throw notFound(name, cause);
        if (isBeyondEnd(cause)) return Readable.from([]); // a range past the end: no bytes, as a file read there
        throw failed(`reading ${name}`, cause);
      }
    },

    async *list(namePrefix = ''): AsyncIterable<StoredObject> {
      const client = await container();
      try {
        for await (const page of pages(client, { prefix: key(namePrefix) })) {
          for (const blob of page) {
            const name = blob.name.slice(prefix.length);
            if (name === '' || name.includes('/')) continue; // a deeper folder, not ours
            yield { name, size: blob.properties.contentLength ?? 0, modifiedAt: blob.properties.lastModified };
          }
        }
      } catch (cause) {
        throw failed('listing', cause);
      }
    },

    async remove(name: string) {
      checkObjectName(name);
      const client = await container();
      try {
        await timed((abortSignal) => client.getBlockBlobClient(key(name)).delete({ abortSignal }));
      } catch (cause) {
        if (isMissingBlob(cause)) throw notFound(name, cause);
        throw failed(`removing ${name}`, cause);
      }
    },

    removeLeftovers,
    listLeftovers,

    async lease(name: string, leaseOptions: LeaseOptions): Promise<Lease> {
      checkObjectName(name);
      const blob = (await container()).getBlockBlobClient(key(name));
      const where = `${description}${name}`;
      const object: VersionedObject = {
        async read() {
          try {
            const response = await timed((abortSignal) => blob.download(0, undefined, { abortSignal }));
            const bytes = await timed(() => buffer(response.readableStreamBody as Readable));
            return { bytes, version: versionOf(response.etag, where) };
          } catch (cause) {
            if (isMissingBlob(cause)) return undefined;
            if (cause instanceof BackupError) throw cause;
            throw failed(`reading the lease ${name}`, cause);
          }
        },
        async write(bytes, expected) {
          try {
            const conditions = expected === undefined ? { ifNoneMatch: '*' } : { ifMatch: expected };
            const { etag } = await timed((abortSignal) => blob.upload(bytes, bytes.length, { conditions, abortSignal, blobHTTPHeaders: { blobContentType: 'application/json' } }));
            return versionOf(etag, where);
          } catch (cause) {
            if (cause instanceof BackupError) throw cause;
            // If-Match on a blob deleted meanwhile is refused as missing: the condition failed all the same.
            if (isTaken(cause) || (expected !== undefined && isMissingBlob(cause))) return undefined;
            throw failed(`writing the lease ${name}`, cause);
          }
        },
      };
      return takeVersioned(object, where, leaseOptions);
    },
  };
}

/**
 * The parts of an `azure://container/prefix` URL, as the command line takes it; the credentials
 * come from elsewhere (the connection string from the environment).
 * @public
 */
export function parseAzureUrl(url: string): Pick<AzureOptions, 'container' | 'prefix'> {
  const match = /^azure:\/\/([^/?#]+)\/?([^?#]*)$/.exec(url);
  if (!match) throw new BackupError('INVALID_OPTIONS', `${JSON.stringify(url)} is not an azure://container/prefix URL`);
  const [, container, prefix] = match as unknown as [string, string, string];
  return prefix === '' ? { container: decodeURIComponent(container) } : { container: decodeURIComponent(container), prefix: decodeURIComponent(prefix) };
}

/** A call the watchdog aborted: the server did not answer in time. */
class TimeoutError extends Error {
  override name = 'TimeoutError';
}

interface AzureRestError {
  statusCode?: number;
  code?: string;
  details?: { errorCode?: string };
}

function errorCode(error: unknown): string | undefined {
  const rest = error as AzureRestError | undefined;
  return rest?.details?.errorCode ?? rest?.code;
}

/** The first line: the service appends request ids and times that only clutter a message. */
function errorText(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0] ?? '';
}

function hintFor(error: unknown, container: string): string | undefined {
  const code = errorCode(error);
  if (code === 'ContainerNotFound') return `The container ${container} does not exist: create it first (for example \`az storage container create --name ${container}\`).`;
  if (error instanceof TimeoutError) return 'The storage account did not answer in time: check that it is reachable and healthy, or raise requestTimeout.';
  if ((error as AzureRestError | undefined)?.statusCode === 403) return 'The storage account refused the credentials: check the account key, SAS token or role assignment (Storage Blob Data Contributor).';
  return undefined;
}

/** Network errors: the connection failed, not the request, and a new connection may well work. */
const TRANSIENT_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNABORTED', 'EHOSTUNREACH', 'ENETUNREACH', 'REQUEST_SEND_ERROR', 'ERR_STREAM_PREMATURE_CLOSE']);

/** Timeouts, dropped connections, throttling and server errors (503 "server busy"): the same call may succeed later. */
function isTransient(error: unknown): boolean {
  if (error instanceof TimeoutError) return true;
  const status = (error as AzureRestError | undefined)?.statusCode;
  if (status !== undefined) return status >= 500 || status === 429 || status === 408;
  return TRANSIENT_CODES.has((error as AzureRestError | undefined)?.code ?? '');
}

/** A conditional commit refused because the blob exists (409) or changed (412). */
function isTaken(error: unknown): boolean {
  const code = errorCode(error);
  return code === 'BlobAlreadyExists' || code === 'ConditionNotMet' || (error as AzureRestError | undefined)?.statusCode === 412;
}

function isInvalidBlockList(error: unknown): boolean {
  return errorCode(error) === 'InvalidBlockList';
}

function isBeyondEnd(error: unknown): boolean {
  return errorCode(error) === 'InvalidRange' || (error as AzureRestError | undefined)?.statusCode === 416;
}

function isMissingBlob(error: unknown): boolean {
  return errorCode(error) === 'BlobNotFound';
}
