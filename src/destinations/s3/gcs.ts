/**
 * Google Cloud Storage through its S3-compatible XML API, with an HMAC key: the S3 adapter, set up
 * for the ways GCS answers differently from S3. A dialect of S3 rather than a kind of its own on
 * `@google-cloud/storage`, because this is what can be tested for real without Google: the same
 * requests against an S3-compatible server (moto) in the tests.
 */
import type * as S3Sdk from '@aws-sdk/client-s3';
import { BackupError } from '../../errors.js';
import type { Destination } from '../../types.js';
import { s3Compatible, type S3Credentials, type S3Dialect, type S3Options } from './index.js';

/**
 * Options of {@link gcs}: those of {@link S3Options} that GCS's XML API honours, with its own
 * credentials and endpoint.
 * @public
 */
export interface GcsOptions
  extends Pick<S3Options, 'bucket' | 'prefix' | 'partSize' | 'queueSize' | 'maxAttempts' | 'connectionTimeout' | 'socketTimeout' | 'abandonedUploadAge' | 'retry'> {
  /**
   * An HMAC key of a service account that may create, read, list and delete objects in the bucket
   * (*Storage Object Admin* on it): `accessKeyId` is the key's access ID (`GOOG1...`),
   * `secretAccessKey` its secret. Or a function resolving one.
   */
  credentials: S3Credentials;
  /** Default `https://storage.googleapis.com`; another for a private endpoint, or a server that speaks the same API. */
  endpoint?: string;
}

/** The requests that create an object: GCS is told to refuse them when the name exists. */
const CREATES = new Set(['PutObjectCommand', 'CompleteMultipartUploadCommand']);

const GCS: S3Dialect = {
  kind: 'gcs',
  scheme: 'gs',
  factory: 'gcs()',
  clientConfig: {
    // GCS signs with SigV4 for any region; `auto` is what its documentation uses.
    region: 'auto',
    forcePathStyle: true,
    // The AWS SDK's default CRC32 checksums (x-amz-checksum-*, aws-chunked bodies with trailers)
    // are S3 features GCS's XML API does not take: send and check them only where S3 requires them.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  },
  adapt(client: S3Sdk.S3Client) {
    // GCS's own create-only precondition: generation 0 matches only a missing object, and a
    // taken name fails with 412, as If-None-Match does on S3 (which the adapter sends as well,
    // for S3-compatible servers).
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const request = args.request as { headers?: Record<string, string> } | undefined;
        if (CREATES.has(context.commandName ?? '') && request?.headers) request.headers['x-goog-if-generation-match'] = '0';
        return next(args);
      },
      { step: 'build', name: 'backupkitGcsCreateOnly' },
    );
  },
};

/**
 * Google Cloud Storage, through its S3-compatible XML API with an HMAC key: archives stream up as
 * XML API multipart uploads with bounded memory, as with {@link s3}, which it is, set up for GCS:
 * the `storage.googleapis.com` endpoint, path-style addresses, no AWS-only checksums, and GCS's
 * own create-only precondition (`x-goog-if-generation-match: 0`), so an existing object is never
 * replaced (`ALREADY_EXISTS`). As with S3, an object becomes visible as soon as its stream ends,
 * and a backup that fails after that deletes it again. Every storage class of GCS reads at once:
 * to store archives colder, set the bucket's default storage class.
 *
 * It needs the AWS SDK (`@aws-sdk/client-s3`, `@aws-sdk/lib-storage`), an optional peer
 * dependency loaded on first use.
 * @public
 */
export function gcs(options: GcsOptions): Destination {
  const credentials = options?.credentials;
  if (credentials === undefined || (typeof credentials !== 'function' && (typeof credentials.accessKeyId !== 'string' || typeof credentials.secretAccessKey !== 'string'))) {
    throw new BackupError('INVALID_OPTIONS', 'gcs() needs `credentials`: an HMAC key, { accessKeyId, secretAccessKey }', {
      hint: 'Create one for a service account in the Cloud console (Cloud Storage > Settings > Interoperability) or with `gcloud storage hmac create`.',
    });
  }
  const { endpoint = 'https://storage.googleapis.com', ...rest } = options;
  // Leases rely on If-None-Match/If-Match writes, which GCS's XML API spells with its own
  // generation preconditions: untested against real GCS, so a gcs() destination keeps none.
  const { lease: _noLease, ...destination } = s3Compatible({ ...rest, endpoint }, GCS);
  return destination;
}
