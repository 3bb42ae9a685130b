/**
 * A local HTTP server standing in for Azure Resource Manager's Container Apps job executions, and
 * a credential standing in for Entra ID: the launcher's real HTTP client talks to them.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ArmCredential } from '../../src/jobs/launchers';

export type FakeExecution = { status: string; endTime?: string } | { httpStatus: number; code: string; message: string };

export interface FakeArm {
  /** http://127.0.0.1:PORT, for armJobExecutions({ endpoint }). */
  endpoint: string;
  /** Execution name -> what a GET of it answers (a status, or an HTTP error); absent: 404. */
  executions: Map<string, FakeExecution>;
  /** Every request received, in order. */
  requests: { method: string; url: string; authorization: string | undefined }[];
  close(): Promise<void>;
}

export async function fakeArm(): Promise<FakeArm> {
  const executions = new Map<string, FakeExecution>();
  const requests: FakeArm['requests'] = [];
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization });
    const name = decodeURIComponent(/\/executions\/([^/?]+)/.exec(req.url ?? '')?.[1] ?? '');
    const ex = executions.get(name);
    const send = (code: number, body: unknown) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (ex === undefined) return send(404, { error: { code: 'ResourceNotFound', message: `no execution ${name}` } });
    if ('httpStatus' in ex) return send(ex.httpStatus, { error: { code: ex.code, message: ex.message } });
    send(200, {
      id: new URL(req.url ?? '', 'http://x').pathname,
      name,
      type: 'Microsoft.App/jobs/executions',
      properties: { status: ex.status, startTime: '2026-11-30T02:00:00Z', ...(ex.endTime ? { endTime: ex.endTime } : {}) },
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { endpoint: `http://127.0.0.1:${port}`, executions, requests, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** Stands in for Entra ID: hands out a fixed token and records the scopes asked for. */
export function tokenCredential(scopes: (string | string[])[] = []): ArmCredential {
  return {
    getToken: async (s) => {
      scopes.push(s);
      return { token: 'arm-token-1' };
    },
  };
}
