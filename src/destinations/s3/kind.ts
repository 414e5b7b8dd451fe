import { BackupError } from '../../errors.js';
import type { DestinationKind } from '../../types.js';
import { parseUrl } from '../../util/url.js';
import { gcs, type GcsOptions } from './gcs.js';
import { s3, type S3Options } from './index.js';

/**
 * The S3 destination kind: `s3://bucket/prefix?endpoint=http://host:9000&region=eu-west-1&path-style=true&storage-class=GLACIER_IR`,
 * `{ "kind": "s3", "bucket": ... }`. Credentials come from the AWS SDK's usual chain
 * (AWS_ACCESS_KEY_ID, profiles, instance roles), never from the URL.
 */
export const s3Kind: DestinationKind<S3Options> = {
  kind: 's3',
  schemes: ['s3:'],
  urlForm: 's3://bucket/prefix[?endpoint=url&region=r&path-style=true&storage-class=GLACIER_IR]',
  fromSpec(spec) {
    const url = parseUrl(spec, 'an S3 destination');
    if (url.hostname === '') throw new BackupError('INVALID_OPTIONS', `${spec}: an S3 destination names its bucket: s3://bucket/prefix`);
    const endpoint = url.searchParams.get('endpoint') ?? undefined;
    const region = url.searchParams.get('region') ?? process.env['AWS_REGION'] ?? undefined;
    const pathStyle = url.searchParams.get('path-style');
    const storageClass = url.searchParams.get('storage-class') ?? undefined;
    return s3({
      bucket: url.hostname,
      prefix: decodeURIComponent(url.pathname.replace(/^\//, '')),
      ...(endpoint === undefined ? {} : { endpoint }),
      ...(region === undefined ? {} : { region }),
      ...(pathStyle === null ? {} : { forcePathStyle: pathStyle !== 'false' }),
      ...(storageClass === undefined ? {} : { storageClass }),
    });
  },
  create: s3,
};

/**
 * Google Cloud Storage through its S3-compatible XML API: `gs://bucket/prefix[?endpoint=url]`,
 * `{ "kind": "gcs", "bucket": ..., "credentials": { ... } }`. The HMAC key comes from
 * `BACKUPKIT_GCS_HMAC_ACCESS_ID` and `BACKUPKIT_GCS_HMAC_SECRET`, never from the URL.
 */
export const gcsKind: DestinationKind<GcsOptions> = {
  kind: 'gcs',
  schemes: ['gs:'],
  urlForm: 'gs://bucket/prefix[?endpoint=url]',
  fromSpec(spec) {
    const url = parseUrl(spec, 'a Google Cloud Storage destination');
    if (url.hostname === '') throw new BackupError('INVALID_OPTIONS', `${spec}: a Google Cloud Storage destination names its bucket: gs://bucket/prefix`);
    const accessKeyId = process.env['BACKUPKIT_GCS_HMAC_ACCESS_ID'];
    const secretAccessKey = process.env['BACKUPKIT_GCS_HMAC_SECRET'];
    if (!accessKeyId || !secretAccessKey) {
      throw new BackupError('INVALID_OPTIONS', `${spec}: a Google Cloud Storage destination needs an HMAC key`, {
        hint: 'Set BACKUPKIT_GCS_HMAC_ACCESS_ID and BACKUPKIT_GCS_HMAC_SECRET to a service account\'s HMAC key (gcloud storage hmac create).',
      });
    }
    const endpoint = url.searchParams.get('endpoint') ?? undefined;
    return gcs({
      bucket: url.hostname,
      prefix: decodeURIComponent(url.pathname.replace(/^\//, '')),
      credentials: { accessKeyId, secretAccessKey },
      ...(endpoint === undefined ? {} : { endpoint }),
    });
  },
  create: gcs,
};
