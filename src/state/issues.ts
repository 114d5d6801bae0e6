/**
 * Validation issues for a snapshot document. The loader reports every problem in one pass (an
 * operator fixing a 2,000-line file should not have to reload once per typo), capped so a file that
 * is wrong throughout does not produce a megabyte of log.
 *
 * Paths are JavaScript-like (`workloads[3].services["default/echo.svc"]`). Field paths are built
 * only when an issue is recorded (`addAt`), so the happy path over 200k workloads stays cheap.
 */
import { ProxyError } from '../errors';

export interface SnapshotIssue {
  /** Where in the document, e.g. `workloads[3].workloadIps[0]` ("" for the document itself). */
  readonly path: string;
  /** The full operator message: `<source>: <path>: <what is wrong>`. */
  readonly message: string;
}

/** Raised for a document that cannot be installed; the last good snapshot stays in force. */
export class SnapshotError extends ProxyError {
  readonly errors: readonly SnapshotIssue[];
  /** Issues found beyond the ones listed in `errors`. */
  readonly omitted: number;
  readonly source: string;
  constructor(source: string, errors: readonly SnapshotIssue[], omitted: number) {
    const total = errors.length + omitted;
    const lines = errors.map((e) => `  ${e.message}`);
    if (omitted > 0) lines.push(`  ... and ${omitted} more`);
    super('ERR_SNAPSHOT', `${source}: invalid snapshot (${total} ${total === 1 ? 'error' : 'errors'}):\n${lines.join('\n')}`);
    this.name = 'SnapshotError';
    this.source = source;
    this.errors = Object.freeze(errors.slice());
    this.omitted = omitted;
  }
}

const SECTIONS = ['workloads', 'services', 'policies'];

function rank(path: string): number {
  const i = SECTIONS.findIndex((s) => path.startsWith(s));
  return i < 0 ? -1 : i;
}

function entry(path: string): number {
  const m = /^[a-z]+\[(\d+)\]/.exec(path);
  return m === null ? -1 : Number(m[1]);
}

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** Appends an object key to a path: `.name` for identifiers, `["default/x"]` otherwise. */
export function keyPath(base: string, key: string): string {
  if (IDENT.test(key)) return base === '' ? key : `${base}.${key}`;
  return `${base}[${JSON.stringify(key)}]`;
}

export function indexPath(base: string, i: number): string {
  return `${base}[${i}]`;
}

/** Collects issues in document order; cheap to carry around when nothing is wrong. */
export class IssueList {
  private readonly list: SnapshotIssue[] = [];
  private extra = 0;
  constructor(readonly source: string, readonly cap = 100) {}

  get count(): number {
    return this.list.length + this.extra;
  }

  add(path: string, what: string): void {
    if (this.list.length >= this.cap) {
      this.extra++;
      return;
    }
    const where = path === '' ? '' : `${path}: `;
    this.list.push(Object.freeze({ path, message: `${this.source}: ${where}${what}` }));
  }

  /** Field-level convenience: the path is built only here, on the error path. */
  addAt(base: string, key: string, what: string): void {
    this.add(keyPath(base, key), what);
  }

  /** Throws a SnapshotError listing the issues in document order (sections, then entries). */
  throwIfAny(): void {
    if (this.count === 0) return;
    // Checks run in dependency order (services before the workloads that refer to them);
    // operators read the file top to bottom, so list issues that way. Array.sort is stable.
    const sorted = this.list.slice().sort((a, b) => rank(a.path) - rank(b.path) || entry(a.path) - entry(b.path));
    throw new SnapshotError(this.source, sorted, this.extra);
  }
}
