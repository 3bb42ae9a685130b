/**
 * Stand-in for `@azure/functions-core`, the module the Azure Functions host injects into the
 * Node worker. `@azure/functions` registers every function through it (app.storageBlob,
 * app.timer, app.http all end in `registerFunction`). Outside the host the embedded runtime
 * provides this module instead, so it receives exactly the metadata and handlers the host would.
 */

export interface CoreBindingInfo {
  type: string;
  direction?: 'in' | 'out' | 'inout';
  name?: string;
  [key: string]: unknown;
}

export interface CoreFunctionMetadata {
  name: string;
  bindings: Record<string, CoreBindingInfo>;
  retryOptions?: unknown;
}

export type CoreFunctionCallback = (...args: unknown[]) => unknown;

export interface CoreRegistration {
  metadata: CoreFunctionMetadata;
  callback: CoreFunctionCallback;
}

interface Disposable {
  dispose(): void;
}

const registrations: CoreRegistration[] = [];
let programmingModel: unknown;

export function setProgrammingModel(model: unknown): void {
  programmingModel = model;
}

export function getProgrammingModel(): unknown {
  return programmingModel;
}

export function registerFunction(metadata: CoreFunctionMetadata, callback: CoreFunctionCallback): Disposable {
  if (registrations.some((r) => r.metadata.name === metadata.name)) {
    throw new Error(`A function named "${metadata.name}" is already registered.`);
  }
  const reg = { metadata, callback };
  registrations.push(reg);
  return {
    dispose() {
      const i = registrations.indexOf(reg);
      if (i >= 0) registrations.splice(i, 1);
    },
  };
}

export function registerHook(): Disposable {
  return { dispose() {} };
}

export function log(level: string, category: string, message: string): void {
  if (level === 'error' || level === 'critical') console.error(`[${category}] ${message}`);
}

/** Every function registered in this process so far. */
export function registeredFunctions(): readonly CoreRegistration[] {
  return registrations;
}
