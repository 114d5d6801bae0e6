/**
 * The one place that loads @peculiar/x509. Everything else imports `x509` from here.
 *
 * Why this module has import-time side effects (the only such module in identity/):
 * - @peculiar/x509 registers its algorithms with tsyringe when it loads, and tsyringe needs the
 *   Reflect metadata polyfill installed first, so 'reflect-metadata' must be imported before it.
 *   The polyfill patches the global `Reflect` object: that is process-wide (per thread) by nature.
 * - The library resolves WebCrypto through its own singleton `cryptoProvider`. We point it at
 *   Node's `crypto.webcrypto` explicitly rather than rely on whatever global `crypto` happens to be
 *   present. Node's webcrypto is one object per thread and the call is idempotent, so every importer
 *   (and every worker thread, which loads its own copy of this module) ends up with the same setting.
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto);

export { x509, webcrypto };
