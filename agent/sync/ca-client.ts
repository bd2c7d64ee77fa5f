// Fetches workload certificates from the controller's CA (api/agent-sync.ts, POST /weft.v1/sign),
// authenticated with the agent's node-bound service-account token. Plugs into the certificate
// manager as its FetchCertificate.
import { connect, constants } from 'node:http2';
import { readFile } from 'node:fs/promises';
import { CONTROLLER_SERVER_NAME, SIGN_PATH, type SignResponse } from '../../api/agent-sync.ts';
import type { FetchCertificate } from '../identity/manager.ts';
import { parseSpiffeId } from '../identity/spiffe.ts';

export interface CaClientOptions {
  url: string;
  caFile: string;
  tokenFile: string;
  serverName?: string;
}

export function caFetcher(o: CaClientOptions): FetchCertificate {
  return async (identity, csrPem, signal) => {
    const id = parseSpiffeId(identity);
    const [token, ca] = await Promise.all([readFile(o.tokenFile, 'utf8'), readFile(o.caFile)]);
    const session = connect(o.url, { ca, servername: o.serverName ?? CONTROLLER_SERVER_NAME, minVersion: 'TLSv1.3' });
    try {
      const body = JSON.stringify({ namespace: id.namespace, serviceAccount: id.serviceAccount, csrPem });
      const req = session.request(
        {
          [constants.HTTP2_HEADER_METHOD]: 'POST',
          [constants.HTTP2_HEADER_PATH]: SIGN_PATH,
          authorization: `Bearer ${token.trim()}`,
          'content-type': 'application/json',
        },
        { signal },
      );
      req.end(body);
      const [status, text] = await new Promise<[number, string]>((resolve, reject) => {
        let status = 0;
        let text = '';
        req.setEncoding('utf8');
        req.on('response', (h) => (status = Number(h[constants.HTTP2_HEADER_STATUS])));
        req.on('data', (c: string) => (text += c));
        req.on('end', () => resolve([status, text]));
        req.on('error', reject);
        session.on('error', reject);
      });
      if (status !== 200) throw Object.assign(new Error(`the CA refused ${identity}: ${status} ${text.trim()}`), { code: status === 403 ? 'CA_FORBIDDEN' : 'CA_FAILED' });
      const r = JSON.parse(text) as SignResponse;
      return { chainPem: r.certChainPem, trustBundlePem: r.trustBundlePem };
    } finally {
      session.close();
    }
  };
}
