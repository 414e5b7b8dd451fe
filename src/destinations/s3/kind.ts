import { BackupError } from '../../errors.js';
import type { DestinationKind } from '../../types.js';
import { parseUrl } from '../../util/url.js';
import { s3, type S3Options } from './index.js';

/**
 * The S3 destination kind: `s3://bucket/prefix?endpoint=http://host:9000&region=eu-west-1&path-style=true`,
 * `{ "kind": "s3", "bucket": ... }`. Credentials come from the AWS SDK's usual chain
 * (AWS_ACCESS_KEY_ID, profiles, instance roles), never from the URL.
 */
export const s3Kind: DestinationKind<S3Options> = {
  kind: 's3',
  schemes: ['s3:'],
  urlForm: 's3://bucket/prefix[?endpoint=url&region=r&path-style=true]',
  fromSpec(spec) {
    const url = parseUrl(spec, 'an S3 destination');
    if (url.hostname === '') throw new BackupError('INVALID_OPTIONS', `${spec}: an S3 destination names its bucket: s3://bucket/prefix`);
    const endpoint = url.searchParams.get('endpoint') ?? undefined;
    const region = url.searchParams.get('region') ?? process.env['AWS_REGION'] ?? undefined;
    const pathStyle = url.searchParams.get('path-style');
    return s3({
      bucket: url.hostname,
      prefix: decodeURIComponent(url.pathname.replace(/^\//, '')),
      ...(endpoint === undefined ? {} : { endpoint }),
      ...(region === undefined ? {} : { region }),
      ...(pathStyle === null ? {} : { forcePathStyle: pathStyle !== 'false' }),
    });
  },
  create: s3,
};
