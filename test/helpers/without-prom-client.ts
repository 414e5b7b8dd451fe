/**
 * Preloaded (`node --import`) into a CLI process to run it as on a machine without prom-client:
 * resolving the package fails as Node.js fails for a package that is not installed. Synchronous
 * hooks (Node.js 22.15 and later) also apply to `require`, which the schedule's metrics load it with.
 */
import * as module from 'node:module';

interface ResolveHooks {
  resolve(specifier: string, context: unknown, next: (specifier: string, context: unknown) => unknown): unknown;
}

(module as unknown as { registerHooks(hooks: ResolveHooks): void }).registerHooks({
  resolve(specifier, context, next) {
    if (specifier === 'prom-client' || specifier.startsWith('prom-client/')) {
      throw Object.assign(new Error(`Cannot find package '${specifier}'`), { code: 'ERR_MODULE_NOT_FOUND' });
    }
    return next(specifier, context);
  },
});
