import type { RestoreSink, Restorer } from '../../src/index.js';

/**
 * The real `inner` restorer, whose commit is followed by `damage` to the committed target, as a
 * faulty disk or a stray process would do: what a verification must read back and report.
 */
export function damagingAfterCommit<Target>(inner: Restorer<Target>, damage: (target: Target) => Promise<void>): Restorer {
  const restorer: Restorer<Target> = {
    ...inner,
    async begin(target, signal): Promise<RestoreSink> {
      const sink = await inner.begin(target, signal);
      return {
        ...sink,
        async commit() {
          await sink.commit();
          await damage(target);
        },
      };
    },
  };
  return restorer as Restorer;
}
