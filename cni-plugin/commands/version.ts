// VERSION: the spec versions weft-cni speaks, echoing the version it was asked in.
import { SUPPORTED_VERSIONS } from '../netconf.ts';

export function versionResult(cniVersion: string): { cniVersion: string; supportedVersions: string[] } {
  return { cniVersion, supportedVersions: [...SUPPORTED_VERSIONS] };
}
