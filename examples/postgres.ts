/**
 * A PostgreSQL database backed up over the wire and restored into a new database
 * (`node build/examples/postgres.js`). The server comes from DATABASE_URL, by default the local
 * one: postgres://postgres@127.0.0.1:5432/postgres.
 */
import pg from 'pg';
import { Database, directory, postgres } from 'backupkit';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const server = process.env['DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
/** The same server, another database. */
const urlOf = (database: string) => Object.assign(new URL(server), { pathname: `/${database}` }).href;
const suffix = `${process.pid}_${Date.now()}`;
const [source, restored] = [`example_shop_${suffix}`, `example_shop_restored_${suffix}`];
const admin = new pg.Client(server);
await admin.connect();
const work = await mkdtemp(join(tmpdir(), 'backupkit-postgres-example-'));
try {
  await admin.query(`CREATE DATABASE ${source}`);
  const shop = new pg.Client(urlOf(source));
  await shop.connect();
  await shop.query('CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL, total numeric(10,2))');
  await shop.query("INSERT INTO orders (item, total) SELECT 'item ' || g, g * 1.5 FROM generate_series(1, 1000) g");
  await shop.end();

  const backups = directory({ path: join(work, 'backups') });
  const db = new Database({ sources: [postgres({ name: 'shop', connection: urlOf(source) })] });
  const result = await db.startBackup({ to: backups }).done;
  console.log(`wrote ${result.name}: ${result.sources[0]?.bytes} bytes of rows`);

  await Database.restore({ from: backups, targets: { shop: { connection: server, database: restored } } });
  const check = new pg.Client(urlOf(restored));
  await check.connect();
  const { rows } = await check.query<{ n: string; total: string }>('SELECT count(*) AS n, sum(total) AS total FROM orders');
  await check.end();
  console.log(`restored ${restored}: ${rows[0]?.n} orders, total ${rows[0]?.total}`);
} finally {
  for (const database of [source, restored]) await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  await admin.end();
  await rm(work, { recursive: true, force: true });
}
