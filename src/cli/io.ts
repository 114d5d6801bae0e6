/** What a CLI command may touch: injected so commands run in-process under test. */
export interface CliIo {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
}

/** Exit codes everywhere: 0 ok; 1 invalid input or denied; 2 usage error or unreadable file. */
export const EXIT_OK = 0;
export const EXIT_INVALID = 1;
export const EXIT_USAGE = 2;
