/** Backs up a folder to a directory destination, printing "started" once data flows; for kill tests. */
import { Database, directory, files } from '../../src/index.js';

const [dir = '', to = ''] = process.argv.slice(2);
const op = new Database({ sources: [files({ name: 'f', dir })] }).startBackup({ to: directory({ path: to }) });
let announced = false;
op.on('progress', (p) => {
  if (!announced && p.phase === 'archive' && p.bytesDone > 0) {
    announced = true;
    process.stdout.write('started\n');
  }
});
await op.done;
