import { createRequire } from 'node:module';
import type * as PromClient from 'prom-client';
import { optionalPeerSync } from '../util/peers.js';

/**
 * prom-client, loaded when a schedule is given a registry (or `backupkit run` makes one). Loaded
 * with `require` so that `db.schedule()` can throw MISSING_DEPENDENCY at once rather than from a
 * later run.
 */
export const loadPromClient = optionalPeerSync({ name: 'prom-client', feature: 'Schedule metrics', install: ['prom-client'] }, () => createRequire(import.meta.url)('prom-client') as typeof PromClient);

/**
 * A prom-client `Registry`, described by the one method backupkit calls itself, so that
 * backupkit's published types need no prom-client.
 * @public
 */
export interface MetricsRegistry {
  /** prom-client's `Registry.getSingleMetric`. */
  getSingleMetric(name: string): unknown;
}

const LABELS = ['schedule', 'type'] as const;

/**
 * The metrics of one schedule in a registry. Several schedules share one registry: each metric is
 * registered once and told apart by its `schedule` label.
 */
export class ScheduleMetrics {
  readonly #lastSuccess: PromClient.Gauge<'schedule' | 'type'>;
  readonly #lastDuration: PromClient.Gauge<'schedule' | 'type'>;
  readonly #lastSize: PromClient.Gauge<'schedule' | 'type'>;
  readonly #failures: PromClient.Counter<'schedule' | 'type'>;
  readonly #skipped: PromClient.Counter<'schedule' | 'type' | 'reason'>;

  constructor(
    registry: MetricsRegistry,
    private readonly schedule: string,
  ) {
    const prom = loadPromClient();
    const registers = [registry as PromClient.Registry];
    const gauge = (name: string, help: string) => (registry.getSingleMetric(name) as PromClient.Gauge<'schedule' | 'type'> | undefined) ?? new prom.Gauge({ name, help, labelNames: LABELS, registers });
    const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
      (registry.getSingleMetric(name) as PromClient.Counter<L> | undefined) ?? new prom.Counter({ name, help, labelNames, registers });
    this.#lastSuccess = gauge('backupkit_schedule_last_success_timestamp_seconds', 'When the last successful run of this type (or incremental that found nothing changed) finished, in seconds since the Unix epoch.');
    this.#lastDuration = gauge('backupkit_schedule_last_duration_seconds', 'How long the last successful run of this type took.');
    this.#lastSize = gauge('backupkit_schedule_last_size_bytes', 'The size of the archive the last successful backup of this type wrote.');
    this.#failures = counter('backupkit_schedule_failures_total', 'Runs of this type that failed.', LABELS);
    this.#skipped = counter('backupkit_schedule_skipped_total', 'Runs of this type that were skipped, by reason.', [...LABELS, 'reason'] as const);
    // Series exist from the start, so that a rate or an absence alert has a zero to compare with.
    for (const type of ['full', 'incremental', 'verify']) this.#failures.inc({ schedule, type }, 0);
  }

  /** A run succeeded, or found nothing changed: `size` is the archive's for a backup made, else undefined. */
  succeeded(type: string, finishedAt: Date, durationMs: number, size: number | undefined): void {
    const labels = { schedule: this.schedule, type };
    this.#lastSuccess.set(labels, finishedAt.getTime() / 1000);
    this.#lastDuration.set(labels, durationMs / 1000);
    if (size !== undefined) this.#lastSize.set(labels, size);
  }

  failed(type: string): void {
    this.#failures.inc({ schedule: this.schedule, type });
  }

  skipped(type: string, reason: string): void {
    this.#skipped.inc({ schedule: this.schedule, type, reason });
  }
}
