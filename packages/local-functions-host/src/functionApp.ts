/**
 * Loads the function app (every file in functions/) the way the Functions host does and
 * returns the registrations it made. The embedded runtime accepts exactly the trigger kinds it
 * can run; any other registration fails loudly here, so nothing registered for Azure can be
 * silently skipped locally.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import Module from 'node:module';
import type { CoreBindingInfo, CoreRegistration } from './functionsCore';

export type Trigger =
  | { kind: 'blob'; path: string; container: string; connection: string }
  | { kind: 'timer'; schedule: string; runOnStartup: boolean }
  | { kind: 'http'; route: string; methods: string[]; authLevel: string };

export interface LoadedFunction {
  name: string;
  trigger: Trigger;
  callback: (...args: unknown[]) => unknown;
  triggerBinding: CoreBindingInfo;
}

export class UnsupportedFunctionError extends Error {}

const CORE_MODULE = '@azure/functions-core';
let resolverInstalled = false;

/** Makes `require('@azure/functions-core')` resolve to the embedded runtime's stand-in. */
export function installCoreResolver(): void {
  if (resolverInstalled) return;
  resolverInstalled = true;
  const shim = require.resolve('./functionsCore');
  const mod = Module as unknown as { _resolveFilename: (request: string, ...rest: unknown[]) => string };
  const original = mod._resolveFilename;
  mod._resolveFilename = function (request: string, ...rest: unknown[]) {
    if (request === CORE_MODULE) return shim;
    return original.call(this, request, ...rest);
  };
}

/** A binding property as text (`dflt` when absent). */
function text(v: unknown, dflt: string): string {
  return v === undefined || v === null ? dflt : typeof v === 'string' ? v : JSON.stringify(v);
}

function toTrigger(fn: string, b: CoreBindingInfo): Trigger {
  const type = b.type.toLowerCase();
  if (type === 'blobtrigger') {
    const p = text(b.path, '');
    if (b.source !== 'EventGrid') {
      throw new UnsupportedFunctionError(
        `Function "${fn}": blob triggers must use source 'EventGrid' (Flex Consumption supports no other); got ${JSON.stringify(b.source)}.`,
      );
    }
    const container = p.split('/')[0] ?? '';
    if (container === '' || !p.includes('/'))
      throw new UnsupportedFunctionError(
        `Function "${fn}": blob trigger path ${JSON.stringify(p)} must be container/pattern.`,
      );
    return { kind: 'blob', path: p, container, connection: text(b.connection, 'AzureWebJobsStorage') };
  }
  if (type === 'timertrigger') {
    return { kind: 'timer', schedule: text(b.schedule, ''), runOnStartup: b.runOnStartup === true };
  }
  if (type === 'httptrigger') {
    const methods = Array.isArray(b.methods)
      ? (b.methods as unknown[]).map((m) => String(m).toUpperCase())
      : ['GET', 'POST'];
    return { kind: 'http', route: text(b.route, fn), methods, authLevel: text(b.authLevel, 'anonymous') };
  }
  throw new UnsupportedFunctionError(
    `Function "${fn}" uses a ${b.type} trigger, which the embedded runtime does not run. Supported: blobTrigger (EventGrid), timerTrigger, httpTrigger.`,
  );
}

/** Validates registrations and turns them into the triggers the runtime drives. */
export function toLoadedFunctions(regs: readonly CoreRegistration[]): LoadedFunction[] {
  return regs.map((r) => {
    const bindings = Object.values(r.metadata.bindings);
    const triggers = bindings.filter((b) => /trigger$/i.test(b.type));
    const [triggerBinding] = triggers;
    if (triggerBinding === undefined || triggers.length !== 1) {
      throw new UnsupportedFunctionError(`Function "${r.metadata.name}" must have exactly one trigger.`);
    }
    const trigger = toTrigger(r.metadata.name, triggerBinding);
    for (const b of bindings) {
      if (b === triggerBinding) continue;
      const httpReturn = trigger.kind === 'http' && b.type.toLowerCase() === 'http' && b.direction === 'out';
      if (!httpReturn) {
        throw new UnsupportedFunctionError(
          `Function "${r.metadata.name}" declares a ${b.type} ${b.direction ?? ''} binding; the embedded runtime runs no input/output bindings: use the storage adapter from the handler.`,
        );
      }
    }
    if (r.metadata.retryOptions !== undefined && r.metadata.retryOptions !== null) {
      throw new UnsupportedFunctionError(
        `Function "${r.metadata.name}" sets a retry policy, which blob triggers do not support and the embedded runtime does not run.`,
      );
    }
    return { name: r.metadata.name, trigger, callback: r.callback, triggerBinding };
  });
}

export interface LoadOptions {
  /** Extension of the registration files; default that of this module (.ts under ts-jest, .js once compiled). */
  extension?: string;
}

/** Requires every function file of `dir` once (as the host does at start-up) and returns the registrations. */
export function loadFunctionApp(dir: string, opts: LoadOptions = {}): LoadedFunction[] {
  installCoreResolver();
  const ext = opts.extension ?? path.extname(__filename);
  const abs = path.resolve(dir);
  const files = readdirSync(abs)
    .filter((f) => path.extname(f) === ext && !f.endsWith('.d.ts') && !f.endsWith('.map'))
    .sort();
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- the registration files, found by listing the folder
  for (const f of files) require(path.join(abs, f));
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const core = require(CORE_MODULE) as typeof import('./functionsCore');
  return toLoadedFunctions(core.registeredFunctions());
}
