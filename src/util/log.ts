/** The logger every layer is handed (handlers, jobs, the model cache): handlers never touch `process.env` or the console. */
export interface Log {
  info: (message: string, ...rest: unknown[]) => void;
  warn: (message: string, ...rest: unknown[]) => void;
  error: (message: string, ...rest: unknown[]) => void;
}

export const consoleLog: Log = {
  info: (m, ...r) => console.log(m, ...r),
  warn: (m, ...r) => console.warn(m, ...r),
  error: (m, ...r) => console.error(m, ...r),
};

export const silentLog: Log = { info() {}, warn() {}, error() {} };
