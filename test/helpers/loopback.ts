/**
 * tap runs test files in parallel, so each file that opens sockets owns one loopback /24:
 * 127.<a>.<b>.0/24, declared once at the top of the file with `loopbackBlock(a, b)`.
 * test/unit/loopback-blocks.test.ts fails if two files declare the same block.
 * Linux routes all of 127.0.0.0/8 to lo, so any of these addresses can be bound without setup.
 */
export interface LoopbackBlock {
  /** 127.a.b.<host> */
  ip(host: number): string;
  readonly cidr: string;
}

export function loopbackBlock(a: number, b: number): LoopbackBlock {
  for (const [name, v] of [['a', a], ['b', b]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 255) throw new Error(`loopbackBlock: ${name}=${v} is not an octet`);
  }
  if (a === 0 && b === 0) throw new Error('loopbackBlock: 127.0.0.0/24 is shared with everything else; pick another');
  return {
    ip(host: number): string {
      if (!Number.isInteger(host) || host < 1 || host > 254) throw new Error(`loopbackBlock: host ${host} out of 1..254`);
      return `127.${a}.${b}.${host}`;
    },
    cidr: `127.${a}.${b}.0/24`,
  };
}
