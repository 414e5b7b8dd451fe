/** Restores the newest backup of a folder destination into a PostgreSQL database; for kill tests. */
import { Database, directory } from '../../src/index.js';

const [from = '', connection = '', database = ''] = process.argv.slice(2);
await Database.restore({ from: directory({ path: from }), targets: { pg: { connection, database } } });
