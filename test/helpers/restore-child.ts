/** Restores the newest backup of a folder destination into a target folder, printing "started" once data flows; for kill tests. */
import { Database, directory } from '../../src/index.js';

const [from = '', target = ''] = process.argv.slice(2);
const restore = Database.restore({ from: directory({ path: from }), targets: { f: { dir: target } } });
let announced = false;
restore.on('progress', (p) => {
  if (!announced && p.source === 'f' && p.bytesDone > 0) {
    announced = true;
    process.stdout.write('started\n');
  }
});
await restore;
