/**
 * Run under a umask: backs up a SQLite database of mode 0640 to a folder destination, restores it,
 * and prints the permission bits of the archive, its sidecar and the restored database as JSON.
 */
import { chmod, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Database, directory, sqlite } from '../../src/index.js';
import { createBank } from './sqlite.js';

const [dir = ''] = process.argv.slice(2);
const db = join(dir, 'app.db');
createBank(db, 10);
await chmod(db, 0o640);
const backups = join(dir, 'backups');
await new Database({ sources: [sqlite({ name: 'db', path: db })] }).startBackup({ to: directory({ path: backups }) }).done;
await Database.restore({ from: directory({ path: backups }), targets: { db: { path: join(dir, 'restored', 'app.db') } } });
const modeOf = async (path: string) => ((await stat(path)).mode & 0o777).toString(8);
const modes: Record<string, string> = {};
for (const name of await readdir(backups)) modes[name.replace(/^\d{8}-\d{6}/, '<name>')] = await modeOf(join(backups, name));
modes['restored app.db'] = await modeOf(join(dir, 'restored', 'app.db'));
process.stdout.write(`${JSON.stringify(modes)}\n`);
