/**
 * Configuration problems as data. Env parsing never stops at the first bad variable (linkerd2-proxy's
 * habit): each problem becomes a ConfigIssue and ConfigError reports them all in one startup failure,
 * so an operator fixes a DaemonSet once instead of once per variable.
 */
import { ProxyError } from '../errors';

export interface ConfigIssue {
  /** The environment variable at fault. */
  readonly variable: string;
  /** Its value as given (the full text; the message shortens long values). */
  readonly value: string;
  /** What would have been accepted, phrased to follow "expected ". */
  readonly expected: string;
}

/**
 * Thrown by value parsers (durations, booleans, addresses ...): `expected` completes the sentence
 * "expected ..." so a caller can turn it into a ConfigIssue without parsing the message.
 */
export class ValueError extends ProxyError {
  readonly expected: string;
  constructor(code: string, input: string, expected: string) {
    super(code, `${JSON.stringify(input)} is not valid: expected ${expected}`);
    this.name = 'ValueError';
    this.expected = expected;
  }
}

// Inline snapshots (LOCAL_XDS) can be kilobytes of YAML; the message names the value, not all of it.
const MAX_SHOWN = 60;

export function formatIssue(issue: ConfigIssue): string {
  const shown = issue.value.length > MAX_SHOWN ? `${issue.value.slice(0, MAX_SHOWN)}...` : issue.value;
  return `${issue.variable}=${JSON.stringify(shown)}: expected ${issue.expected}`;
}

/** Every bad variable at once; `issues` is for programs, the message (one line per issue) for people. */
export class ConfigError extends ProxyError {
  readonly issues: readonly ConfigIssue[];
  constructor(issues: readonly ConfigIssue[]) {
    const n = issues.length;
    super(
      'ERR_CONFIG',
      [`invalid configuration (${n} ${n === 1 ? 'problem' : 'problems'}):`, ...issues.map(formatIssue)].join('\n'),
    );
    this.name = 'ConfigError';
    this.issues = Object.freeze(issues.map((i) => Object.freeze({ ...i })));
  }
}
