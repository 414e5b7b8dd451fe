import { createRequire } from 'node:module';
import { PassThrough, Readable } from 'node:stream';
import { setImmediate as nextMacrotask } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type * as S3Sdk from '@aws-sdk/client-s3';
import type * as S3Storage from '@aws-sdk/lib-storage';
import { BackupError } from '../../errors.js';
import type { Destination, Lease, LeaseOptions, ReadRange, StoredObject, Upload } from '../../types.js';
import { takeVersioned, versionOf, type VersionedObject } from '../../util/lease.js';
import { optionalPeer, type Peer } from '../../util/peers.js';
import { checkObjectName } from '../object-name.js';
import { checkRange } from '../range.js';
import { withRetry, type RetryOptions } from '../retry.js';

const PEER: Omit<Peer, 'name'> = { feature: 'S3 destinations', install: ['@aws-sdk/client-s3', '@aws-sdk/lib-storage'] };
/**
 * Packages of the AWS SDK's client, heaviest first. Importing the client compiles them all in one
 * go: 80-90 ms of the host's event loop here. Each one loaded on its own, with a turn of the
 * event loop between, leaves the longest at about 40 ms (`@smithy/core`).
 */
const S3_SDK_PARTS = ['@smithy/core', '@smithy/node-http-handler', '@aws-sdk/middleware-sdk-s3/s3', '@aws-sdk/core/client', '@smithy/core/checksum', '@aws-sdk/core/httpAuthSchemes', '@aws-sdk/credential-provider-node'];

/** The AWS SDK, loaded when an S3 destination is first used. */
const loadS3 = optionalPeer({ name: '@aws-sdk/client-s3', ...PEER }, async (): Promise<typeof S3Sdk> => {
  const main = fileURLToPath(import.meta.resolve('@aws-sdk/client-s3'));
  const require = createRequire(main);
  for (const part of S3_SDK_PARTS) {
    try {
      require(part);
    } catch {
      // moved or renamed in another SDK release: loaded with the client below
    }
    await nextMacrotask();
  }
  // require(), not import(): import() of this CommonJS file parses it once more to detect its format (20 ms).
  return require(main) as typeof S3Sdk;
});
const loadS3Storage = optionalPeer({ name: '@aws-sdk/lib-storage', ...PEER }, (): Promise<typeof S3Storage> => import('@aws-sdk/lib-storage'));

/**
 * An application's own S3 client, such as an `S3Client` of `@aws-sdk/client-s3`. Declared here so
 * that backupkit's types do not need the AWS SDK in an application that does not use S3.
 * @public
 */
export interface S3ClientLike {
  /** Sends an S3 command. */
  send(command: never, options?: never): Promise<unknown>;
  /** The client's resolved settings, read by the multipart upload helper. */
  readonly config: object;
}

/**
 * An access key, as the AWS SDK's `AwsCredentialIdentity`.
 * @public
 */
export interface S3AccessKey {
  /** The access key ID. */
  readonly accessKeyId: string;
  /** The secret access key. */
  readonly secretAccessKey: string;
  /** With temporary credentials: their session token. */
  readonly sessionToken?: string;
  /** With temporary credentials: when they expire. */
  readonly expiration?: Date;
}

/**
 * S3 credentials: an access key, or a function resolving one (as the AWS SDK's credential
 * providers do).
 * @public
 */
export type S3Credentials = S3AccessKey | (() => Promise<S3AccessKey>);

/**
 * Options of {@link s3}.
 * @public
 */
export interface S3Options {
  /** The bucket; it must exist. */
  bucket: string;
  /** A folder inside the bucket, such as `backups/app/`. */
  prefix?: string;
  /** Default `us-east-1`; most S3-compatible services ignore it. */
  region?: string;
  /** For S3-compatible services: `https://<account>.r2.cloudflarestorage.com`, `http://127.0.0.1:9000`, ... */
  endpoint?: string;
  /** Address buckets as `endpoint/bucket` (MinIO and most local servers need it). */
  forcePathStyle?: boolean;
  /** Default: the AWS SDK's credential chain (environment, profile, instance role). */
  credentials?: S3Credentials;
  /** Your application's own `S3Client`; the options above except `bucket` and `prefix` are then ignored. */
  client?: S3ClientLike;
  /** Multipart part size in bytes, at least 5 MiB; default 16 MiB. Memory is about partSize x (queueSize + 1). */
  partSize?: number;
  /** Parts uploaded at once; default 4. */
  queueSize?: number;
  /** Attempts per request, with exponential backoff, for transient errors; default 5. */
  maxAttempts?: number;
  /** Milliseconds to wait for a connection to open; default 10 000. Ignored with `client`. */
  connectionTimeout?: number;
  /**
   * Milliseconds a connection may stay silent, sending or receiving, before the request fails
   * (and is retried up to `maxAttempts`); default 120 000. It also bounds how long a restore may
   * leave a download unread, so keep it above the longest pause of your slowest restore.
   * Ignored with `client`: give your own client a `requestHandler` with a `socketTimeout`.
   */
  socketTimeout?: number;
  /**
   * Milliseconds after which an incomplete multipart upload under `prefix` is taken as abandoned
   * by a writer that died, and aborted by the next backup or prune; default 24 hours. Keep it
   * above your longest backup.
   */
  abandonedUploadAge?: number;
  /**
   * The storage class of archives, such as `STANDARD_IA`, `GLACIER_IR`, `GLACIER` or
   * `DEEP_ARCHIVE`; default the bucket's (`STANDARD`). Sidecars (`.json`) and name claims
   * (`.claim`) stay in `STANDARD`, so listing and retention read them at once. An archive in
   * `GLACIER` or `DEEP_ARCHIVE` must be restored (thawed) in S3 before backupkit can read it:
   * restoring it before then fails with `DESTINATION_FAILED`, whose hint says how. A class the
   * AWS SDK does not know fails the first call with `INVALID_OPTIONS`. In a URL:
   * `s3://bucket/prefix?storage-class=GLACIER_IR`.
   */
  storageClass?: string;
  /**
   * Retries of whole operations after a transient failure, on top of the SDK's per-request
   * attempts (see {@link withRetry}): a download that breaks midway resumes from the byte it
   * reached. Default: 3 attempts.
   */
  retry?: RetryOptions;
}

const MIN_PART_SIZE = 5 * 1024 * 1024;
const DEFAULT_CONNECTION_TIMEOUT_MS = 10_000;
const DEFAULT_SOCKET_TIMEOUT_MS = 120_000;
const DEFAULT_ABANDONED_UPLOAD_AGE_MS = 24 * 3_600_000;
const TIMEOUT_HINT = 'The S3 server did not answer in time: check that it is reachable and healthy, or raise connectionTimeout/socketTimeout.';

/**
 * S3 and S3-compatible object storage (AWS, Cloudflare R2, MinIO, Backblaze B2; for Google Cloud
 * Storage, {@link gcs} sets it up for GCS's XML API).
 * Archives stream up as multipart uploads with bounded memory; a failed or aborted upload aborts
 * its multipart upload, so no parts are left behind. Restores stream straight from the bucket.
 *
 * An object becomes visible only once complete, but as soon as its stream ends, not at
 * `commit()`: S3 cannot hold a finished upload back. A backup that fails after that point deletes
 * it again. Writes are conditional (`If-None-Match: *`), so an existing object is never replaced
 * (`ALREADY_EXISTS`); the server must support conditional writes (AWS S3 does since 2024).
 *
 * Its leases (`startBackup({ lease })`) are one small object, written with `If-None-Match: *` to
 * take a free lease and `If-Match: <etag>` to renew it or take over an expired one.
 *
 * Every request has a connection and an idle timeout, so a frozen server fails the operation
 * with `DESTINATION_FAILED` instead of hanging it; timeouts, dropped connections and server errors
 * are retried (`maxAttempts`, `retry`). The first `create()` aborts abandoned
 * multipart uploads (see `abandonedUploadAge`).
 * @public
 */
export function s3(options: S3Options): Destination {
  return s3Compatible(options, AWS);
}

/**
 * What sets a service that speaks S3's API apart from S3 itself: its name, and the client
 * settings and request changes its quirks call for.
 */
export interface S3Dialect {
  /** `Destination.kind`. */
  readonly kind: string;
  /** The URL scheme of its description: `s3` gives `s3://bucket/prefix`. */
  readonly scheme: string;
  /** The factory that messages about bad options name, such as `s3()`. */
  readonly factory: string;
  /** Settings of the `S3Client` made from the options, on top of theirs. */
  readonly clientConfig?: Partial<S3Sdk.S3ClientConfig>;
  /** Adds the client's middleware, on a client made from the options (never on an application's own). */
  adapt?(client: S3Sdk.S3Client): void;
}

const AWS: S3Dialect = { kind: 's3', scheme: 's3', factory: 's3()' };

/**
 * Gives the event loop a turn before a request is checksummed and again before it is signed. For
 * each multipart part (16 MiB by default) the SDK concatenates the part, computes its CRC32 and,
 * over plain HTTP, its SHA-256: 45-60 ms of the host's event loop in one go here.
 */
function yieldBetweenSteps(client: S3Sdk.S3Client): void {
  client.middlewareStack.add(
    (next) => async (args) => {
      await nextMacrotask();
      return next(args);
    },
    { step: 'initialize', priority: 'low', name: 'backupkitYieldBeforeChecksum' },
  );
  client.middlewareStack.add(
    (next) => async (args) => {
      await nextMacrotask();
      return next(args);
    },
    { step: 'build', priority: 'low', name: 'backupkitYieldBeforeSigning' },
  );
}

/** {@link s3}, or a service of that dialect of S3's API. */
export function s3Compatible(options: S3Options, dialect: S3Dialect): Destination {
  const { factory } = dialect;
  if (typeof options?.bucket !== 'string' || options.bucket === '') {
    throw new BackupError('INVALID_OPTIONS', `${factory} needs a \`bucket\``);
  }
  const partSize = options.partSize ?? 16 * 1024 * 1024;
  if (!Number.isInteger(partSize) || partSize < MIN_PART_SIZE) {
    throw new BackupError('INVALID_OPTIONS', `${factory} partSize must be at least ${MIN_PART_SIZE} bytes (an S3 limit)`);
  }
  const queueSize = options.queueSize ?? 4;
  const abandonedUploadAge = options.abandonedUploadAge ?? DEFAULT_ABANDONED_UPLOAD_AGE_MS;
  for (const option of ['connectionTimeout', 'socketTimeout', 'abandonedUploadAge'] as const) {
    const value = options[option];
    if (value !== undefined && !(Number.isFinite(value) && value > 0)) {
      throw new BackupError('INVALID_OPTIONS', `${factory} ${option} must be a positive number of milliseconds, not ${String(value)}`);
    }
  }
  if (options.storageClass !== undefined && (typeof options.storageClass !== 'string' || (options.storageClass as string) === '')) {
    throw new BackupError('INVALID_OPTIONS', `${factory} storageClass must be an S3 storage class such as GLACIER, not ${String(options.storageClass)}`);
  }
  const { bucket, storageClass } = options;
  const prefix = options.prefix ? options.prefix.replace(/^\/+/, '').replace(/\/*$/, '/') : '';
  let connecting: Promise<{ sdk: typeof S3Sdk; client: S3Sdk.S3Client }> | undefined;
  /** The SDK and the client, on first use: a destination made but never used loads nothing. */
  const connect = () =>
    (connecting ??= loadS3().then((sdk) => {
      // Checked against the SDK's list, which grows with AWS's: a typo would otherwise surface as
      // a server's refusal only once an archive is written, after the backup's work is done.
      const known: readonly string[] = Object.values(sdk.StorageClass);
      if (storageClass !== undefined && dialect.kind === 's3' && !known.includes(storageClass)) {
        throw new BackupError('INVALID_OPTIONS', `${factory} storageClass ${JSON.stringify(storageClass)} is not an S3 storage class`, { hint: `Use one of ${known.join(', ')}.` });
      }
      const client =
        (options.client as S3Sdk.S3Client | undefined) ??
        new sdk.S3Client({
          region: options.region ?? 'us-east-1',
          maxAttempts: options.maxAttempts ?? 5,
          requestHandler: {
            connectionTimeout: options.connectionTimeout ?? DEFAULT_CONNECTION_TIMEOUT_MS,
            socketTimeout: options.socketTimeout ?? DEFAULT_SOCKET_TIMEOUT_MS,
          },
          ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
          ...(options.forcePathStyle === undefined ? {} : { forcePathStyle: options.forcePathStyle }),
          ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
          ...dialect.clientConfig,
        });
      if (options.client === undefined) {
        yieldBetweenSteps(client);
        dialect.adapt?.(client);
      }
      return { sdk, client };
    }).catch((cause: unknown) => {
      connecting = undefined; // installed meanwhile: the next call tries again
      throw cause;
    }));
  const description = `${dialect.scheme}://${bucket}/${prefix}`;
  const key = (name: string) => `${prefix}${name}`;
  const failed = (action: string, cause: unknown) =>
    new BackupError('DESTINATION_FAILED', `${description}: ${action} failed: ${(cause as Error).message}`, {
      cause,
      transient: isTransient(cause),
      ...((cause as Error | undefined)?.name === 'TimeoutError' ? { hint: TIMEOUT_HINT } : {}),
    });
  const exists = (name: string, cause: unknown) =>
    new BackupError('ALREADY_EXISTS', `${description} already holds ${name}; it was not replaced`, { cause });
  let swept: Promise<string[]> | undefined;

  /** Visits the multipart uploads under the prefix older than `abandonedUploadAge`. */
  const forEachAbandonedUpload = async (visit: (upload: { Key: string; UploadId: string }) => Promise<void>): Promise<string[]> => {
    const { sdk, client } = await connect();
    const visited: string[] = [];
    const oldest = Date.now() - abandonedUploadAge;
    let markers: { KeyMarker?: string; UploadIdMarker?: string } = {};
    for (;;) {
      const page = await client.send(new sdk.ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix, ...markers }));
      for (const { Key, UploadId, Initiated } of page.Uploads ?? []) {
        if (Key === undefined || UploadId === undefined || (Initiated?.getTime() ?? Infinity) > oldest) continue;
        await visit({ Key, UploadId });
        visited.push(Key.slice(prefix.length));
      }
      if (!page.IsTruncated) return visited;
      markers = { KeyMarker: page.NextKeyMarker, UploadIdMarker: page.NextUploadIdMarker };
    }
  };

  const removeLeftovers = (): Promise<string[]> =>
    forEachAbandonedUpload(async ({ Key, UploadId }) => {
      const { sdk, client } = await connect();
      await client.send(new sdk.AbortMultipartUploadCommand({ Bucket: bucket, Key, UploadId }));
    }).catch(rethrowAs('aborting abandoned multipart uploads'));

  const listLeftovers = (): Promise<string[]> => forEachAbandonedUpload(async () => {}).catch(rethrowAs('listing abandoned multipart uploads'));

  /** Wraps an SDK failure; a BackupError (a missing SDK) passes through. */
  const rethrowAs = (action: string) => (cause: unknown): never => {
    throw cause instanceof BackupError ? cause : failed(action, cause);
  };

  const destination: Destination = {
    kind: dialect.kind,
    description,
    capabilities: { deferredCommit: false },

    async create(name: string): Promise<Upload> {
      checkObjectName(name);
      const [{ client }, { Upload: MultipartUpload }] = await Promise.all([connect(), loadS3Storage()]);
      // Best effort: a backup does not fail for want of tidying up; prune reports it.
      await (swept ??= removeLeftovers().catch(() => []));
      const stream = new PassThrough({ highWaterMark: 1024 * 1024 });
      // If-None-Match reaches both PutObject (small objects) and CompleteMultipartUpload.
      const params = { Bucket: bucket, Key: key(name), Body: stream, IfNoneMatch: '*', ...(storageClass === undefined || isSmallObject(name) ? {} : { StorageClass: storageClass as S3Sdk.StorageClass }) };
      const upload = new MultipartUpload({ client, params, partSize, queueSize, leavePartsOnError: false });
      const uploadFailed = (cause: unknown) => (isTaken(cause) ? exists(name, cause) : failed(`uploading ${name}`, cause));
      const done = upload.done();
      // A failed part surfaces on the stream at once, so the backup stops instead of writing on.
      done.catch((cause: unknown) => {
        if (!stream.destroyed) stream.destroy(uploadFailed(cause));
      });
      let completed = false;
      return {
        stream,
        async commit() {
          try {
            await done;
            completed = true;
          } catch (cause) {
            throw uploadFailed(cause);
          }
        },
        async abort() {
          stream.destroy();
          if (completed || (await done.then(() => true, () => false))) {
            const { sdk } = await connect();
            await client.send(new sdk.DeleteObjectCommand({ Bucket: bucket, Key: key(name) }));
          } else {
            await upload.abort().catch(() => {}); // already aborted by the failure itself
          }
        },
      };
    },

    async open(name: string, range?: ReadRange): Promise<Readable> {
      checkObjectName(name);
      const { start, end } = checkRange(range);
      const { sdk, client } = await connect();
      try {
        const Range = start === 0 && end === undefined ? undefined : `bytes=${start}-${end === undefined ? '' : end - 1}`;
        const { Body } = await client.send(new sdk.GetObjectCommand({ Bucket: bucket, Key: key(name), ...(Range && { Range }) }));
        const body = Body as Readable;
        // The SDK's socket timeout ends a silent download with its own error; say which and where.
        const out = new PassThrough({ highWaterMark: 1024 * 1024 });
        body.on('error', (cause) => out.destroy(failed(`reading ${name}`, cause)));
        out.on('close', () => body.destroy());
        return body.pipe(out);
      } catch (cause) {
        if (isMissing(cause)) throw new BackupError('NOT_FOUND', `${description} has no ${name}`, { cause });
        if (isFrozen(cause)) {
          throw new BackupError('DESTINATION_FAILED', `${description}: ${name} is archived in a cold storage class and must be restored in S3 before it can be read`, {
            cause,
            hint: `Restore it first (aws s3api restore-object --bucket ${bucket} --key ${key(name)} --restore-request Days=3), wait until aws s3api head-object shows ongoing-request="false" (minutes to hours for GLACIER, up to 48 hours for DEEP_ARCHIVE), then run this again.`,
          });
        }
        if (isBeyondEnd(cause)) return Readable.from([]); // a range past the end: no bytes, as a file read there
        throw failed(`reading ${name}`, cause);
      }
    },

    async *list(namePrefix = ''): AsyncIterable<StoredObject> {
      const { sdk, client } = await connect();
      try {
        for await (const page of sdk.paginateListObjectsV2({ client }, { Bucket: bucket, Prefix: key(namePrefix) })) {
          for (const object of page.Contents ?? []) {
            const name = (object.Key ?? '').slice(prefix.length);
            if (name === '' || name.includes('/')) continue; // a deeper folder, not ours
            yield { name, size: object.Size ?? 0, modifiedAt: object.LastModified ?? new Date(0) };
          }
        }
      } catch (cause) {
        throw failed('listing', cause);
      }
    },

    async remove(name: string) {
      checkObjectName(name);
      const { sdk, client } = await connect();
      try {
        // DELETE succeeds on a missing key; HEAD first, so a missing object is NOT_FOUND as elsewhere.
        await client.send(new sdk.HeadObjectCommand({ Bucket: bucket, Key: key(name) }));
        await client.send(new sdk.DeleteObjectCommand({ Bucket: bucket, Key: key(name) }));
      } catch (cause) {
        if (isMissing(cause)) throw new BackupError('NOT_FOUND', `${description} has no ${name}`, { cause });
        throw failed(`removing ${name}`, cause);
      }
    },

    removeLeftovers,
    listLeftovers,

    async lease(name: string, leaseOptions: LeaseOptions): Promise<Lease> {
      checkObjectName(name);
      const { sdk, client } = await connect();
      const Key = key(name);
      const where = `${description}${name}`;
      const object: VersionedObject = {
        async read() {
          try {
            const { Body, ETag } = await client.send(new sdk.GetObjectCommand({ Bucket: bucket, Key }));
            return { bytes: Buffer.from(await (Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray()), version: versionOf(ETag, where) };
          } catch (cause) {
            if (isMissing(cause)) return undefined;
            if (cause instanceof BackupError) throw cause;
            throw failed(`reading the lease ${name}`, cause);
          }
        },
        async write(bytes, expected) {
          try {
            const condition = expected === undefined ? { IfNoneMatch: '*' } : { IfMatch: expected };
            const { ETag } = await client.send(new sdk.PutObjectCommand({ Bucket: bucket, Key, Body: bytes, ContentType: 'application/json', ...condition }));
            return versionOf(ETag, where);
          } catch (cause) {
            if (cause instanceof BackupError) throw cause;
            // If-Match on a key deleted meanwhile answers 404: the condition failed all the same.
            if (isTaken(cause) || (expected !== undefined && isMissing(cause))) return undefined;
            throw failed(`writing the lease ${name}`, cause);
          }
        },
      };
      return takeVersioned(object, where, leaseOptions);
    },
  };
  return withRetry(destination, options.retry);
}

/** What the SDK's errors carry: a name, an HTTP status, and whether the SDK deems it retryable. */
type SdkError = { name?: string; code?: string; $metadata?: { httpStatusCode?: number }; $retryable?: unknown } | undefined;

/** Told by shape, not class: an application's own client may come from another copy of the SDK. */
function status(error: unknown): number | undefined {
  return (error as SdkError)?.$metadata?.httpStatusCode;
}

/** A conditional write refused because the key exists (412), or raced by another write (409). */
function isTaken(error: unknown): boolean {
  const { name } = (error as SdkError) ?? {};
  return name === 'PreconditionFailed' || name === 'ConditionalRequestConflict' || status(error) === 412;
}

/** Sidecars and name claims: read by every listing and claim, so they never go to a cold class. */
function isSmallObject(name: string): boolean {
  return name.endsWith('.json') || name.endsWith('.claim');
}

/** GetObject on an object in GLACIER or DEEP_ARCHIVE that is not restored. */
function isFrozen(error: unknown): boolean {
  return (error as SdkError)?.name === 'InvalidObjectState';
}

function isMissing(error: unknown): boolean {
  const { name } = (error as SdkError) ?? {};
  return name === 'NoSuchKey' || name === 'NotFound' || status(error) === 404;
}

function isBeyondEnd(error: unknown): boolean {
  return (error as SdkError)?.name === 'InvalidRange' || status(error) === 416;
}

/** Network errors: the connection failed, not the request, and a new connection may well work. */
const TRANSIENT_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE']);

/** Timeouts, dropped connections, throttling and server errors: the same request may succeed later. */
function isTransient(error: unknown): boolean {
  const sdkError = error as SdkError;
  if (sdkError?.$retryable) return true;
  const code = status(error);
  if (code !== undefined) return code >= 500 || code === 429 || code === 408;
  return sdkError?.name === 'TimeoutError' || TRANSIENT_CODES.has(sdkError?.code ?? '');
}
