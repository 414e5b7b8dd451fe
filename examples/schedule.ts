/**
 * Backups that run themselves (`node build/examples/schedule.js`): a full backup at once (the
 * destination holds none yet, so the daily full is overdue: catch-up), incrementals every two
 * seconds, retention after each, Prometheus metrics, then a clean stop.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Sqlite from 'better-sqlite3';
import { Registry } from 'prom-client';
import { Database, directory, sqlite } from 'backupkit';

const work = await mkdtemp(join(tmpdir(), 'backupkit-schedule-example-'));
try {
  const dbPath = join(work, 'app.db');
  const app = new Sqlite(dbPath);
  app.exec("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES ('ada'), ('grace')");
  app.close();

  const registry = new Registry();
  const db = new Database({ sources: [sqlite({ name: 'app', path: dbPath })] });
  const schedule = db.schedule({
    to: directory({ path: join(work, 'backups') }),
    full: '0 3 * * *',
    incremental: '2s',
    retention: { keepLast: 5 },
    name: 'example',
    metrics: { registry },
  });
  schedule.on('failed', (_run, error) => console.error(`${error.code}: ${error.message}`));
  // The catch-up full, then the first incremental slot: two runs, then stop.
  await new Promise<void>((resolve) => {
    let runs = 0;
    schedule.on('settled', (run) => {
      console.log(`${run.trigger} ${run.type}: ${run.outcome}${run.name ? ` ${run.name}` : ''}${run.reason ? ` (${run.reason})` : ''}`);
      if (++runs === 2) resolve();
    });
  });
  console.log(`next full at ${schedule.status().next.full?.toISOString()}`);
  await schedule.stop(); // waits for a running backup; stop({ signal }) would cancel it
  const metrics = (await registry.metrics()).split('\n').filter((line) => line.startsWith('backupkit_schedule_last_success'));
  console.log(metrics.join('\n'));
} finally {
  await rm(work, { recursive: true, force: true });
}
