/**
 * A local HTTP server standing in for Azure Resource Manager's Container Apps job endpoints (start
 * an execution, the start operation's status, read an execution), and a credential standing in
 * for Entra ID. The launcher's real client, @azure/arm-appcontainers' ContainerAppsAPIClient,
 * talks to them: its requests are addressed to https://management.azure.com as in Azure (so its
 * bearer-token policy runs), and the HTTP client given to it delivers them here.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ContainerAppsAPIClient } from '@azure/arm-appcontainers';
import { createDefaultHttpClient, HttpClient } from '@azure/core-rest-pipeline';
import type { ArmCredential } from '../../src/jobs/launchers';

export type FakeExecution =
  { status: string; endTime?: string } | { httpStatus: number; code: string; message: string };
/** What a start answers: the new execution (202, named), or an error. */
export type FakeStart = { name: string } | { httpStatus: number; code: string; message: string };

export const ARM_HOST = 'https://management.azure.com';

export interface FakeArm {
  /** http://127.0.0.1:PORT */
  endpoint: string;
  /** Execution name -> what a GET of it answers (a status, or an HTTP error); absent: 404. */
  executions: Map<string, FakeExecution>;
  /** What the next starts answer, in order (each start takes the first); empty: a 500. */
  starts: FakeStart[];
  /** What a GET of a start operation's status answers (default: 403, a role scoped to the job may not read it). */
  operationStatus: { httpStatus: number; body: unknown };
  /** Bodies of the start requests received. */
  startBodies: unknown[];
  /** Every request received, in order. */
  requests: { method: string; url: string; authorization: string | undefined }[];
  /** A ContainerAppsAPIClient whose requests reach this server. */
  client(credential?: ArmCredential): ContainerAppsAPIClient;
  close(): Promise<void>;
}

export async function fakeArm(subscriptionId = '00000000-1111-2222-3333-444444444444'): Promise<FakeArm> {
  const executions = new Map<string, FakeExecution>();
  const requests: FakeArm['requests'] = [];
  const state = {
    starts: [] as FakeStart[],
    startBodies: [] as unknown[],
    operationStatus: {
      httpStatus: 403,
      body: { error: { code: 'AuthorizationFailed', message: 'no read on the operation' } },
    } as FakeArm['operationStatus'],
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization });
      const send = (code: number, body: unknown, headers: Record<string, string> = {}) => {
        res.writeHead(code, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify(body));
      };
      const url = new URL(req.url ?? '', 'http://x');
      if (req.method === 'POST' && url.pathname.endsWith('/start')) {
        state.startBodies.push(chunks.length > 0 ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined);
        const next = state.starts.shift();
        if (next === undefined)
          return send(500, { error: { code: 'NoStartPlanned', message: 'the test planned no start' } });
        if ('httpStatus' in next) return send(next.httpStatus, { error: { code: next.code, message: next.message } });
        const jobPath = url.pathname.replace(/\/start$/, '');
        const operation = `${ARM_HOST}/subscriptions/${subscriptionId}/providers/Microsoft.App/locations/westus3/containerappOperationStatuses/op-${next.name}?api-version=2025-07-01`;
        return send(
          202,
          { id: `${jobPath}/executions/${next.name}`, name: next.name },
          { location: operation, 'azure-asyncoperation': operation },
        );
      }
      if (req.method === 'GET' && url.pathname.includes('/containerappOperationStatuses/')) {
        return send(state.operationStatus.httpStatus, state.operationStatus.body);
      }
      const name = decodeURIComponent(/\/executions\/([^/?]+)/.exec(url.pathname)?.[1] ?? '');
      const ex = executions.get(name);
      if (ex === undefined) return send(404, { error: { code: 'ResourceNotFound', message: `no execution ${name}` } });
      if ('httpStatus' in ex) return send(ex.httpStatus, { error: { code: ex.code, message: ex.message } });
      send(200, {
        id: url.pathname,
        name,
        type: 'Microsoft.App/jobs/executions',
        properties: {
          status: ex.status,
          startTime: '2026-11-30T02:00:00Z',
          ...(ex.endTime ? { endTime: ex.endTime } : {}),
        },
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    executions,
    get starts() {
      return state.starts;
    },
    get startBodies() {
      return state.startBodies;
    },
    get operationStatus() {
      return state.operationStatus;
    },
    set operationStatus(v) {
      state.operationStatus = v;
    },
    requests,
    client: (credential = tokenCredential()) =>
      new ContainerAppsAPIClient(credential, subscriptionId, {
        httpClient: toLocal(endpoint),
        retryOptions: { maxRetries: 0 },
      }),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** Delivers requests addressed to Resource Manager to `endpoint` instead. */
function toLocal(endpoint: string): HttpClient {
  const inner = createDefaultHttpClient();
  const target = new URL(endpoint);
  return {
    sendRequest: (request) => {
      const url = new URL(request.url);
      if (`${url.protocol}//${url.host}` !== ARM_HOST)
        throw new Error(`request to ${request.url}, not to Resource Manager`);
      url.protocol = target.protocol;
      url.host = target.host;
      request.url = url.toString();
      request.allowInsecureConnection = true; // to this machine only
      return inner.sendRequest(request);
    },
  };
}

/** Stands in for Entra ID: hands out a fixed token and records the scopes asked for. */
export function tokenCredential(scopes: (string | string[])[] = []): ArmCredential {
  return {
    getToken: async (s) => {
      scopes.push(s);
      return { token: 'arm-token-1', expiresOnTimestamp: Date.now() + 3_600_000 };
    },
  };
}
