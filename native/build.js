#!/usr/bin/env node
'use strict';
// Install hook for the native addon (`npm ci` runs it through package.json "install").
// node-gyp downloads Node's headers when it is not told where local ones are; this machine's
// builds must never touch the network for that, so the header directory is always passed
// explicitly: npm_config_nodedir (from .npmrc / CI) or the prefix of the running node binary
// (/usr/bin/node -> /usr, which holds include/node). If neither has the headers, fail loudly.
const { existsSync } = require('node:fs');
const { dirname, join, resolve } = require('node:path');
const { spawnSync } = require('node:child_process');

function hasHeaders(dir) {
  return Boolean(dir) && existsSync(join(dir, 'include', 'node', 'node_api.h'));
}

function nodeGypScript() {
  // npm exports its bundled node-gyp to lifecycle scripts; a local install is the fallback.
  if (process.env.npm_config_node_gyp && existsSync(process.env.npm_config_node_gyp)) {
    return process.env.npm_config_node_gyp;
  }
  return require.resolve('node-gyp/bin/node-gyp.js');
}

function main() {
  const candidates = [process.env.npm_config_nodedir, resolve(dirname(process.execPath), '..')];
  const nodedir = candidates.find(hasHeaders);
  if (!nodedir) {
    console.error(
      `native/build.js: no local Node headers (looked for include/node/node_api.h under ${candidates.filter(Boolean).join(', ')}); ` +
        'install the Node development headers or set npm_config_nodedir; refusing to let node-gyp download them',
    );
    return 1;
  }
  const args = [nodeGypScript(), 'rebuild', `--nodedir=${nodedir}`];
  const r = spawnSync(process.execPath, args, { cwd: __dirname, stdio: 'inherit' });
  if (r.error) {
    console.error(`native/build.js: cannot run node-gyp: ${r.error.message}`);
    return 1;
  }
  return r.status ?? 1;
}

process.exitCode = main();
