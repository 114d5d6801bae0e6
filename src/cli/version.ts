import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface BuildInfo {
  readonly name: string;
  readonly version: string;
  readonly node: string;
}

/** Read once from package.json (dist/src/cli → ../../../package.json), so the version has one source. */
export function buildInfo(): BuildInfo {
  const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as {
    name: string;
    version: string;
  };
  return { name: pkg.name, version: pkg.version, node: process.version };
}

export function formatVersion(info: BuildInfo): string {
  return `${info.name} ${info.version} (node ${info.node}, ${process.platform}/${process.arch})`;
}
