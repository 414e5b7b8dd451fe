/**
 * Starts a backup of a SQLite database that does not exist and neither awaits `done` nor, unless
 * `listen` is given, listens to `error`: what an application that forgot both sees.
 */
import { Database, directory, sqlite } from '../../src/index.js';

const [missing = '', to = '', mode = ''] = process.argv.slice(2);
const op = new Database({ sources: [sqlite({ name: 'app', path: missing })] }).startBackup({ to: directory({ path: to }) });
if (mode === 'listen') op.on('error', (error) => process.stdout.write(`error event: ${error.code}\n`));
