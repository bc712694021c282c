// transition and release against the real binary: a Genesys call from the examples' cassette
// moved by the admin API (and read back through the API as the SDK reads it), the state
// overlay's refusals with their status, and a held move released.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startCallvcr } from '../index.mjs';
import { BIN, REPO, API, tempdir, cleanup } from './helpers.mjs';

const CALL = '5b4c1a7e-2f5e-4c47-9d0e-1f2a3b4c5d6e';
const CUSTOMER = '8e2f3a4b-1c2d-4e5f-9a0b-1c2d3e4f5a6b';

describe('call states through the admin API', { timeout: 60000 }, () => {
  let dir;
  let cv;

  before(async () => {
    dir = tempdir('state');
    fs.copyFileSync(path.join(REPO, 'examples', 'genesys-call.jsonl'), path.join(dir, 'genesys-call.jsonl'));
    // The generic machine holds RINGING → ANSWERED until released (README, "State overlay").
    fs.writeFileSync(path.join(dir, 'proxy.yaml'), 'state:\n  machines:\n    - name: generic\n      hold: [{from: RINGING, to: ANSWERED}]\n');
    // auth off: this test reads the call without signing in first.
    cv = await startCallvcr({ cassette: 'genesys-call.jsonl', cwd: dir, bin: BIN, config: 'proxy.yaml', overlaysOff: ['auth'] });
  });

  after(async () => {
    if (cv) await cv.stop();
    cleanup(dir);
  });

  it('moves a participant of a recorded call, and the API shows it', async () => {
    const moved = await cv.transition(CALL, 'disconnected', { metadata: { participantId: CUSTOMER } });
    assert.deepEqual(moved, { id: CALL, state: 'disconnected', participantId: CUSTOMER });
    const session = await cv.session(CALL);
    assert.equal(session.machine, 'genesys-call');
    assert.equal(session.history.at(-1).to, 'disconnected');
    const r = await fetch(`https://${API}/api/v2/conversations/calls/${CALL}`, { dispatcher: cv.proxyAgent() });
    assert.equal(r.status, 200);
    const customer = (await r.json()).participants.find((p) => p.id === CUSTOMER);
    assert.equal(customer.state, 'disconnected');
  });

  it('rejects a move the machine refuses with 422, and a wrong `from` with 409', async () => {
    const refused = await cv.transition(CALL, 'connected', { metadata: { participantId: CUSTOMER } }).catch((e) => e);
    assert.equal(refused.status, 422);
    assert.equal(refused.body.error, 'invalid_transition');
    assert.match(refused.message, /allowed from here/);
    const wrongFrom = await cv.transition('c-generic', 'RINGING', { from: 'ANSWERED' }).catch((e) => e);
    assert.equal(wrongFrom.status, 409);
  });

  it('rejects the admin calls for a session callvcr does not know', async () => {
    await assert.rejects(cv.session('never-made'), (e) => e.status === 404 && e.code === 'not_found');
    await assert.rejects(cv.release('never-made'), (e) => e.status === 404 && e.code === 'not_found');
    // Known, but with nothing held: 409.
    await assert.rejects(cv.release(CALL), (e) => e.status === 409 && /no held transition/.test(e.message));
  });

  it('holds a move until release, then applies it', async () => {
    assert.deepEqual(await cv.transition('c-held', 'RINGING'), { id: 'c-held', state: 'RINGING' });
    const held = await cv.transition('c-held', 'ANSWERED', { from: 'RINGING' });
    assert.deepEqual([held.state, held.held], ['RINGING', 'ANSWERED']);
    const released = await cv.release('c-held');
    assert.equal(released.state, 'ANSWERED');
    assert.equal((await cv.session('c-held')).state, 'ANSWERED');
    await assert.rejects(cv.release('c-held'), (e) => e.status === 409, 'none held any more');
  });
});
