/**
 * A local host for an Azure Functions (Node.js v4 programming model) app: Azurite as a supervised
 * child process, the app's registrations loaded the way the Functions host loads them, and a lock
 * that keeps one host per data folder. The package's only entry point.
 */
export {
  DEV_ACCOUNT,
  DEV_KEY,
  PRELOAD_MARKER,
  azuritePreloadPath,
  devConnectionString,
  startAzurite,
  superviseAzurite,
  type AzuriteHandle,
  type AzuriteOptions,
  type SupervisorEvents,
} from './azurite';
export {
  DataDirLockedError,
  acquireDataLock,
  lockFile,
  processAlive,
  type DataLock,
  type LockHolder,
  type LockOptions,
} from './dataLock';
export {
  UnsupportedFunctionError,
  installCoreResolver,
  loadFunctionApp,
  toLoadedFunctions,
  type LoadOptions,
  type LoadedFunction,
  type Trigger,
} from './functionApp';
export type { CoreBindingInfo, CoreFunctionMetadata, CoreRegistration } from './functionsCore';
