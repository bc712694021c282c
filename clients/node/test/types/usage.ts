// Compiled (not run) by package.test.mjs with tsc --noEmit: the declarations describe the API as
// the tests use it.
import { startCallvcr, connectCallvcr, CallvcrAdminError, type Callvcr, type StopResult } from 'callvcr';
import { useCallvcr } from 'callvcr/node-test';
import { useCallvcr as useJest } from 'callvcr/jest';
import { useCallvcr as useVitest, CallvcrMissError } from 'callvcr/vitest';

async function main(): Promise<void> {
  const cv: Callvcr = await startCallvcr({ cassette: 'c.jsonl', mode: 'replay', overlaysOff: ['auth'], clockStart: new Date(), installProxy: true });
  const env: string = cv.env.HTTPS_PROXY;
  const headers: Record<string, string> = { ...cv.scopeHeader('t') };
  await cv.scope('t');
  const missed: string[] = await cv.misses('t');
  const { now } = await cv.advanceClock(1000);
  await cv.setClock(new Date(now));
  await cv.expireTokens({ clientId: 'c' });
  await cv.transition('s', 'disconnected', { metadata: { participantId: 'p' } });
  await cv.release('s', { participantId: 'p' });
  const { queued }: { queued: number } = await cv.pushEvent({ a: 1 }, { topic: 't', delayMs: 5 });
  const status: number = await cv.withFault('status', { status: 503, match: { path: '/x' } }, async (f) => f.id.length);
  const f = await cv.fault('latency', { delay_ms: 10 });
  await f.remove();
  const journal = await cv.journal({ scope: 't' });
  const answered: string | undefined = journal[0]?.answered_by;
  await fetch('https://api.mypurecloud.com/', { dispatcher: cv.proxyAgent() } as RequestInit);
  const stopped: StopResult = await cv.stop({ timeoutMs: 5000 });
  const code: number | null = stopped.code;
  const attached = connectCallvcr({ adminUrl: 'http://127.0.0.1:1', proxyUrl: 'http://127.0.0.1:2', caPath: '/ca.pem' });
  const e = new Error() as CallvcrAdminError | CallvcrMissError;
  void [env, headers, missed, queued, status, answered, code, attached, e];
}

const a = useCallvcr({ cassette: 'c', failOnMiss: true, reuse: false });
const b = useJest({ cassette: 'c' });
const c = useVitest({ attach: true });
const url: string = a.proxyUrl + b.adminUrl + (c.current?.caPath ?? '');
void [main, url];
