/**
 * Command dispatch for the `ztunnel-ts` bin. Istio's chart runs `ztunnel proxy ztunnel`, so
 * `proxy ztunnel` is accepted as well as `proxy` and no arguments at all.
 */
import { EXIT_OK, EXIT_USAGE, type CliIo } from './io';
import { kubeSnapshotCommand } from './kube-snapshot';
import { authzCommand, caCommand, checkConfig } from './offline';
import { buildInfo, formatVersion } from './version';
import { proxyCommand, type ProcessHooks } from './proxy';

const USAGE = `usage: ztunnel-ts [command]

commands:
  proxy [ztunnel]          run the proxy (the default)
  version                  print the version
  check-config FILE        validate a snapshot file (ztunnel's local config format)
  authz --config FILE --src IP:PORT [--identity spiffe://TD/ns/NS/sa/SA] --dst IP:PORT [--network NET]
                           evaluate one connection against the snapshot's policies
  ca init DIR              write a new plug-in CA folder (for LOCAL_CA_DIR)
  kube-snapshot FILE|-     kubectl JSON of namespaces, pods, services -> a local snapshot (YAML)

configuration comes from environment variables: see the README.
`;

export async function runCli(argv: readonly string[], io: CliIo, hooks: ProcessHooks): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case undefined:
      return proxyCommand(io, hooks);
    case 'proxy':
      if (rest.length === 0 || (rest.length === 1 && rest[0] === 'ztunnel')) return proxyCommand(io, hooks);
      io.err(`ztunnel-ts proxy: unexpected argument ${JSON.stringify(rest[rest.length === 1 ? 0 : 1])}\n${USAGE}`);
      return EXIT_USAGE;
    case 'version':
    case '--version':
      io.out(`${formatVersion(buildInfo())}\n`);
      return EXIT_OK;
    case 'check-config':
      return checkConfig(rest, io);
    case 'authz':
      return authzCommand(rest, io);
    case 'ca':
      return caCommand(rest, io);
    case 'kube-snapshot':
      return kubeSnapshotCommand(rest, io);
    case 'help':
    case '--help':
    case '-h':
      io.out(USAGE);
      return EXIT_OK;
    default:
      io.err(`ztunnel-ts: unknown command ${JSON.stringify(cmd)}\n${USAGE}`);
      return EXIT_USAGE;
  }
}
