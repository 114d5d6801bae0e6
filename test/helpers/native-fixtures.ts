/** Small helpers shared by the addon tests (test/native/). */
import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';

/** A net.Server adopting an already-listening fd from the addon. */
export async function adoptListener(fd: number, onConn: (s: Socket) => void = (s) => s.resume()): Promise<Server> {
  const srv = createServer(onConn);
  srv.listen({ fd });
  await once(srv, 'listening');
  return srv;
}

export function closeServer(srv: Server): Promise<void> {
  return new Promise((r) => srv.close(() => r()));
}

/** The error `fn` throws (fails the test when it does not throw). */
export function thrown(fn: () => unknown): NodeJS.ErrnoException {
  try {
    fn();
  } catch (err) {
    return err as NodeJS.ErrnoException;
  }
  throw new Error('expected a throw');
}
