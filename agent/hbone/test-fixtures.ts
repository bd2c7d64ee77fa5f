// Real certificates for HBONE tests and benchmarks: a mesh CA (controller/ca) issuing to CSRs made
// by the agent's own generator, checked by the agent's own WorkloadCertificate. Not used at runtime.

import { MeshCa } from '../../controller/ca/ca.ts';
import { createRoot } from '../../controller/ca/root.ts';
import { WorkloadCertificate } from '../identity/certificate.ts';
import { generateKeyAndCsr } from '../identity/csr.ts';
import { parseSpiffeId } from '../identity/spiffe.ts';

export type TestMesh = {
  ca: MeshCa;
  issue: (identity: string) => Promise<WorkloadCertificate>;
};

export async function createTestMesh(trustDomain = 'cluster.local'): Promise<TestMesh> {
  const { root } = await createRoot({ trustDomain });
  const ca = new MeshCa(root);
  return {
    ca,
    issue: async (identity) => {
      const { namespace, serviceAccount } = parseSpiffeId(identity);
      const { keyPem, csrPem } = await generateKeyAndCsr(identity);
      const signed = await ca.sign(csrPem, { namespace, serviceAccount });
      return WorkloadCertificate.fromIssued({ identity, keyPem, chainPem: signed.chainPem, trustBundlePem: signed.trustBundlePem });
    },
  };
}
