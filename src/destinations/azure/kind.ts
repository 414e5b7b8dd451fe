import { BackupError } from '../../errors.js';
import type { DestinationKind } from '../../types.js';
import { azure, parseAzureUrl, type AzureOptions } from './index.js';

/**
 * The Azure Blob kind: `azure://container/prefix`, `{ "kind": "azure", "container": ... }`. The
 * connection string comes from `AZURE_STORAGE_CONNECTION_STRING`, as for the Azure CLI, never
 * from the URL: command lines end up in shell history.
 */
export const azureKind: DestinationKind<AzureOptions> = {
  kind: 'azure',
  schemes: ['azure:'],
  urlForm: 'azure://container/prefix',
  fromSpec(spec) {
    const connectionString = process.env['AZURE_STORAGE_CONNECTION_STRING'];
    if (connectionString === undefined || connectionString === '') {
      throw new BackupError('INVALID_OPTIONS', `${spec}: an Azure destination needs the storage account's connection string`, {
        hint: 'Set AZURE_STORAGE_CONNECTION_STRING (the Azure portal shows it under Access keys), or write the destination in a config file.',
      });
    }
    return azure({ ...parseAzureUrl(spec), connectionString });
  },
  create: azure,
};
