import { PassThrough, type Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  S3Client,
  S3ServiceException,
  paginateListObjectsV2,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload as MultipartUpload } from '@aws-sdk/lib-storage';
import { BackupError } from '../../errors.js';
import type { Destination, StoredObject, Upload } from '../../types.js';
import { checkObjectName } from '../object-name.js';

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
  credentials?: S3ClientConfig['credentials'];
  /** Your application's own client; the options above except `bucket` and `prefix` are then ignored. */
  client?: S3Client;
  /** Multipart part size in bytes, at least 5 MiB; default 16 MiB. Memory is about partSize x (queueSize + 1). */
  partSize?: number;
  /** Parts uploaded at once; default 4. */
  queueSize?: number;
  /** Attempts per request, with exponential backoff, for transient errors; default 5. */
  maxAttempts?: number;
}

const MIN_PART_SIZE = 5 * 1024 * 1024;

/**
 * S3 and S3-compatible object storage (AWS, Cloudflare R2, MinIO, Backblaze B2, GCS's S3 API).
 * Archives stream up as multipart uploads with bounded memory; a failed or aborted upload aborts
 * its multipart upload, so no parts are left behind. Restores stream straight from the bucket.
 *
 * An object becomes visible only once complete, but as soon as its stream ends, not at
 * `commit()`: S3 cannot hold a finished upload back. A backup that fails after that point deletes
 * it again.
 * @public
 */
export function s3(options: S3Options): Destination {
  if (typeof options?.bucket !== 'string' || options.bucket === '') {
    throw new BackupError('INVALID_OPTIONS', 's3() needs a `bucket`');
  }
  const partSize = options.partSize ?? 16 * 1024 * 1024;
  if (!Number.isInteger(partSize) || partSize < MIN_PART_SIZE) {
    throw new BackupError('INVALID_OPTIONS', `s3() partSize must be at least ${MIN_PART_SIZE} bytes (an S3 limit)`);
  }
  const queueSize = options.queueSize ?? 4;
  const { bucket } = options;
  const prefix = options.prefix ? options.prefix.replace(/^\/+/, '').replace(/\/*$/, '/') : '';
  const client =
    options.client ??
    new S3Client({
      region: options.region ?? 'us-east-1',
      maxAttempts: options.maxAttempts ?? 5,
      ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
      ...(options.forcePathStyle === undefined ? {} : { forcePathStyle: options.forcePathStyle }),
      ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
    });
  const description = `s3://${bucket}/${prefix}`;
  const key = (name: string) => `${prefix}${name}`;
  const failed = (action: string, cause: unknown) =>
    new BackupError('DESTINATION_FAILED', `${description}: ${action} failed: ${(cause as Error).message}`, { cause });

  return {
    kind: 's3',
    description,
    capabilities: { atomicCommit: true, deferredCommit: false },

    async create(name: string): Promise<Upload> {
      checkObjectName(name);
      const stream = new PassThrough({ highWaterMark: 1024 * 1024 });
      const upload = new MultipartUpload({ client, params: { Bucket: bucket, Key: key(name), Body: stream }, partSize, queueSize, leavePartsOnError: false });
      const done = upload.done();
      // A failed part surfaces on the stream at once, so the backup stops instead of writing on.
      done.catch((cause: unknown) => {
        if (!stream.destroyed) stream.destroy(failed(`uploading ${name}`, cause));
      });
      let completed = false;
      return {
        stream,
        async commit() {
          try {
            await done;
            completed = true;
          } catch (cause) {
            throw failed(`uploading ${name}`, cause);
          }
        },
        async abort() {
          stream.destroy();
          if (completed || (await done.then(() => true, () => false))) {
            await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key(name) }));
          } else {
            await upload.abort().catch(() => {}); // already aborted by the failure itself
          }
        },
      };
    },

    async open(name: string): Promise<Readable> {
      checkObjectName(name);
      try {
        const { Body } = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key(name) }));
        return Body as Readable;
      } catch (cause) {
        if (isMissing(cause)) throw new BackupError('NOT_FOUND', `${description} has no ${name}`, { cause });
        throw failed(`reading ${name}`, cause);
      }
    },

    async *list(namePrefix = ''): AsyncIterable<StoredObject> {
      try {
        for await (const page of paginateListObjectsV2({ client }, { Bucket: bucket, Prefix: key(namePrefix) })) {
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
      try {
        // DELETE succeeds on a missing key; HEAD first, so a missing object is NOT_FOUND as elsewhere.
        await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key(name) }));
        await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key(name) }));
      } catch (cause) {
        if (isMissing(cause)) throw new BackupError('NOT_FOUND', `${description} has no ${name}`, { cause });
        throw failed(`removing ${name}`, cause);
      }
    },
  };
}

function isMissing(error: unknown): boolean {
  return error instanceof S3ServiceException && (error.name === 'NoSuchKey' || error.name === 'NotFound' || error.$metadata.httpStatusCode === 404);
}
