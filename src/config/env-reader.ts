/**
 * Reads variables from an injected environment map and collects problems instead of throwing.
 * One reader lives for one parse; its issue list is the only state and is never shared.
 */
import { ValueError, type ConfigIssue } from './issues';

export type Env = Readonly<Record<string, string | undefined>>;

export class EnvReader {
  private readonly env: Env;
  private readonly found: ConfigIssue[] = [];

  constructor(env: Env) {
    this.env = env;
  }

  /**
   * The raw value, or undefined when unset. An empty value counts as unset: Kubernetes manifests
   * and shells routinely produce `VAR=` for "no value", and treating it as a bad value would make
   * templated DaemonSets fail for no reason.
   */
  raw(name: string): string | undefined {
    const v = this.env[name];
    return v === undefined || v === '' ? undefined : v;
  }

  /**
   * Parses `name` with `parse`; when unset returns `fallback`. A ValueError from the parser becomes
   * an issue and the fallback is returned so parsing can go on and find the other problems.
   */
  read<T>(name: string, parse: (s: string) => T, fallback: T): T {
    const raw = this.raw(name);
    if (raw === undefined) return fallback;
    try {
      return parse(raw);
    } catch (err) {
      if (err instanceof ValueError) {
        this.issue(name, raw, err.expected);
        return fallback;
      }
      throw err;
    }
  }

  /** Like read, but undefined when unset or bad (for variables whose absence means something). */
  optional<T>(name: string, parse: (s: string) => T): T | undefined {
    return this.read<T | undefined>(name, parse, undefined);
  }

  issue(variable: string, value: string, expected: string): void {
    this.found.push({ variable, value, expected });
  }

  get issues(): readonly ConfigIssue[] {
    return this.found;
  }
}
