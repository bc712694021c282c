'use strict';
// A JSON client for callvcr's admin API over node:http. Not fetch: a test may have installed a
// proxying global dispatcher (ours or its own), and admin calls must always go straight to the
// loopback listener.

const http = require('node:http');

/** An admin call callvcr refused: `status` is the HTTP status, `body` the JSON it answered, `code` its `error`. */
class CallvcrAdminError extends Error {
  constructor(method, route, status, body) {
    const code = body && typeof body === 'object' ? body.error : undefined;
    const detail = body && typeof body === 'object' && body.message ? body.message : JSON.stringify(body);
    super(`callvcr admin ${method} ${route} → ${status}${code ? ` ${code}` : ''}: ${detail}`);
    this.name = 'CallvcrAdminError';
    this.status = status;
    this.body = body;
    this.code = code;
  }
}

/**
 * An admin client for `adminUrl` (`http://127.0.0.1:PORT`). `token` is `admin.token` when the
 * config sets one. `onTransportError(err)` may rewrite a connection error (the process died).
 */
function adminClient(adminUrl, { token, timeoutMs = 10000, onTransportError } = {}) {
  const base = new URL(adminUrl);
  // Keep-alive: a test makes many small calls; free sockets are unref'd, so they never hold a process open.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });

  /** `method route` with `body` (JSON); resolves with the parsed answer, rejects with CallvcrAdminError on 4xx/5xx. */
  function call(method, route, body) {
    const headers = { accept: 'application/json' };
    let payload;
    // Every state-changing call carries a JSON body: the admin API wants Content-Type on them (415 otherwise).
    if (body !== undefined || method === 'POST') {
      payload = Buffer.from(JSON.stringify(body === undefined ? {} : body));
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(payload.length);
    }
    if (token) headers.authorization = `Bearer ${token}`;
    return new Promise((resolve, reject) => {
      const req = http.request(
        { agent, host: base.hostname, port: base.port, method, path: route, headers, timeout: timeoutMs },
        (res) => {
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let json;
            try {
              json = text === '' ? null : JSON.parse(text);
            } catch {
              json = text;
            }
            if (res.statusCode >= 400) reject(new CallvcrAdminError(method, route, res.statusCode, json));
            else resolve(json);
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`callvcr admin ${method} ${route}: no answer in ${timeoutMs} ms`)));
      req.on('error', (e) => reject(onTransportError ? onTransportError(e) : e));
      req.end(payload);
    });
  }

  return { call, close: () => agent.destroy() };
}

module.exports = { adminClient, CallvcrAdminError };
