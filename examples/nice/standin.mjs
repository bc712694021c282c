// A stand-in NICE CXone platform for recording examples/nice-agent.jsonl: the endpoints NICE's
// agent SDKs (@nice-devone/* 25.1.2) call for agent_flow.mjs, answering as the platform does
// (PKCE checked, RS256-signed tokens, rotating refresh tokens, every API call's bearer checked, an
// agent session whose get-next-event long poll delivers the contact's events as they happen).
// It is a test double of ours, not NICE's code, and knows only what the flow needs.
//
//   node standin.mjs --dir DIR [--port N] [--ready-file F] [--log F] [--proxy-port N]
//
// At start it makes, with openssl, a test CA, a leaf for cxone.niceincontact.com and
// *.niceincontact.com, and an RSA key that signs the JWTs (kid "standin-key-1"), all in DIR.
// Once listening it prints one JSON line {"port","ca","proxy"?} on stdout (and writes it to the
// ready file). Every request is logged as a JSON line to --log (default DIR/requests.jsonl).
// --proxy-port opens a plain CONNECT proxy to itself too, for running the flow straight against
// the stand-in (HTTPS_PROXY=http://127.0.0.1:N) while debugging; recording does not use it.
//
// Env: STANDIN_FIRST_EXPIRES_IN (605: the SDK refreshes 600 s before expiry, so 5 s in),
// STANDIN_REFRESH_EXPIRES_IN (3600), STANDIN_POLL_HOLD_MAX_S (hold an idle poll at most this long
// before 304; default the poll's own timeout).
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';

// ---- arguments ----
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const dir = path.resolve(opt('dir', process.env.STANDIN_DIR || 'target/examples/nice-standin'));
const port = Number(opt('port', process.env.STANDIN_PORT || 0));
const readyFile = opt('ready-file', process.env.STANDIN_READY_FILE || '');
const logFile = opt('log', path.join(dir, 'requests.jsonl'));
const proxyPort = opt('proxy-port', process.env.STANDIN_PROXY_PORT || '');
const FIRST_EXPIRES_IN = Number(process.env.STANDIN_FIRST_EXPIRES_IN || 605);
const REFRESH_EXPIRES_IN = Number(process.env.STANDIN_REFRESH_EXPIRES_IN || 3600);
const POLL_HOLD_MAX_S = process.env.STANDIN_POLL_HOLD_MAX_S ? Number(process.env.STANDIN_POLL_HOLD_MAX_S) : Infinity;

// ---- the platform's fixed facts for this tenant ----
const HOST = 'cxone.niceincontact.com';
const ISSUER = `https://${HOST}`;
const KID = 'standin-key-1';
const TENANT_ID = '11eb7bd6-1c2e-4a80-9b7e-0242ac110002';
const TENANT_NAME = 'standin_tenant';
const USER_ID = '11eb7bd6-5e41-4c21-8f3a-0242ac110005';
const AGENT_ID = '4242';
const BU_ID = '4600112';
const CLUSTER = 'B32';
const TEAM_ID = '1771';
const AREA = 'na1';
const DOMAIN = 'niceincontact.com';
const ACD_BASE = `https://api-${CLUSTER.toLowerCase()}.${DOMAIN}`;
const SKILL_ID = '4354181';
const CONTACT_ID = '481516234';
const ANI = '3175550123';
const DNIS = '8005550199';
const SESSION_PREFIX = 'a1b2c3d4-';
const STATION_ID = '3182577';

// ---- certificates and the signing key ----
fs.mkdirSync(dir, { recursive: true });
const file = (n) => path.join(dir, n);
function openssl(...a) {
  execFileSync('openssl', a, { stdio: ['ignore', 'ignore', 'pipe'] });
}
function makeCerts() {
  if (![file('ca.pem'), file('leaf.pem'), file('leaf-key.pem'), file('jwt-key.pem')].every((f) => fs.existsSync(f))) {
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', file('ca-key.pem'), '-out', file('ca.pem'),
      '-days', '30', '-subj', '/CN=callvcr NICE stand-in test CA',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', file('leaf-key.pem'), '-out', file('leaf.csr'),
      '-subj', `/CN=${HOST}`);
    fs.writeFileSync(file('leaf.ext'), [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth',
      `subjectAltName=DNS:${HOST},DNS:*.${DOMAIN}`,
      '',
    ].join('\n'));
    openssl('x509', '-req', '-in', file('leaf.csr'), '-CA', file('ca.pem'), '-CAkey', file('ca-key.pem'),
      '-CAcreateserial', '-out', file('leaf.pem'), '-days', '30', '-extfile', file('leaf.ext'));
    openssl('genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', file('jwt-key.pem'));
  }
}
makeCerts();
const signingKey = crypto.createPrivateKey(fs.readFileSync(file('jwt-key.pem')));
const jwk = crypto.createPublicKey(signingKey).export({ format: 'jwk' });

// ---- JWTs ----
const b64url = (buf) => Buffer.from(buf).toString('base64url');
function signJwt(claims) {
  const head = b64url(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: KID }));
  const body = b64url(JSON.stringify(claims));
  const sig = crypto.sign('RSA-SHA256', Buffer.from(`${head}.${body}`), signingKey);
  return `${head}.${body}.${b64url(sig)}`;
}
function userClaims(clientId, expiresIn) {
  const now = Math.floor(Date.now() / 1000);
  return {
    iss: ISSUER,
    aud: clientId,
    sub: `user:${USER_ID}`,
    tenantId: TENANT_ID,
    tenant: TENANT_NAME,
    icAgentId: AGENT_ID,
    icBUId: BU_ID,
    icClusterId: CLUSTER,
    userId: USER_ID,
    teamId: TEAM_ID,
    name: 'agent.smith@standin.example',
    given_name: 'Agent',
    family_name: 'Smith',
    iat: now,
    nbf: now,
    exp: now + expiresIn,
    jti: crypto.randomUUID(),
  };
}

// ---- state ----
const codes = new Map(); // code → {clientId, redirectUri, challenge, method, tenantId}
const accessTokens = new Map(); // token → {exp (ms), clientId}
const refreshTokens = new Map(); // token → {clientId, live}
let tokensIssued = 0;
let refreshed = false;

/** The one agent session of this run. */
let session = null;
/** A session id; never one holding "60" (the SDK's poll retry rewrites the first "60" of the URL). */
function sessionId() {
  for (;;) {
    const id = `${SESSION_PREFIX}${crypto.randomBytes(2).toString('hex')}-4c1e-9a7b-${crypto.randomBytes(6).toString('hex')}`;
    if (!id.includes('60')) return id;
  }
}
const newSession = () => ({
  id: sessionId(),
  queue: [], // events waiting for a poll
  poll: null, // the poll held open: {res, timer}
  ended: false,
  contact: { status: 'Incoming', started: new Date(), changed: new Date(), offered: false },
});

function callContactEvent(c) {
  const utc = (d) => d.toISOString().replace(/\.\d+Z$/, '.000Z');
  const b = (v) => (v ? 'True' : 'False');
  const final = c.status === 'Disconnected';
  return {
    Type: 'CallContactEvent',
    ContactID: CONTACT_ID,
    MasterID: CONTACT_ID,
    Status: c.status,
    OriginalState: b(c.status === 'Incoming'),
    CallType: 'Regular',
    DNIS,
    ANI,
    Skill: SKILL_ID,
    IsInbound: 'True',
    StartTimeUTC: utc(c.started),
    StartTime: utc(c.started),
    LastStateChangeTimeUTC: utc(c.changed),
    LastStateChangeTime: utc(c.changed),
    ScreenPopUrl: '',
    DisconnectCode: final ? 'AgentDisconnect' : 'None',
    IsLogging: 'False',
    Timeout: '45',
    AllowDispositions: 'False',
    Label: '',
    IsLinked: 'False',
    TimeZones: '',
    FinalState: b(final),
    OtherInformation: '',
    OtherInformationNewFormat: '',
    BlendingToSkillName: '',
    DeliveryType: 'Manual',
    CustomData: '',
    ComplianceRecord: 'False',
    ConfirmationRequired: 'False',
    ParentContactId: '',
    OmniGroupId: '0',
    ExternalId: '',
    AnsMachineOverride: 'False',
    AnsMachineOverrideEndTime: '',
    InteractionId: '7f3c2a10-4b5d-4e6f-8a9b-0c1d2e3f4a5b',
    CustomerCardUrl: '',
    IsRequireManualAccept: 'False',
  };
}

/** Puts an event on the session's queue and answers the held poll with it. */
function push(event) {
  if (!session || session.ended) return;
  session.queue.push(event);
  flushPoll();
}
function flushPoll() {
  const s = session;
  if (!s?.poll) return;
  const { res, timer } = s.poll;
  if (s.ended) {
    s.poll = null;
    clearTimeout(timer);
    sessionGone(res);
  } else if (s.queue.length) {
    s.poll = null;
    clearTimeout(timer);
    send(res, 200, { sessionId: s.id, events: s.queue.splice(0) });
  }
}
function sessionGone(res) {
  send(res, 409, { error: 'AgentSessionEnded', error_description: 'The agent session has ended.' });
}
/** The platform ends the session once the token was refreshed and the call is over. */
function maybeEndSession() {
  if (session && !session.ended && refreshed && session.contact.status === 'Disconnected' && !session.queue.length) {
    session.ended = true;
    flushPoll();
  }
}

// ---- HTTP helpers ----
const log = fs.createWriteStream(logFile, { flags: 'a' });
function send(res, status, body, headers = {}) {
  const text = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
  const h = { 'Cache-Control': 'no-store', ...headers };
  if (text) h['Content-Type'] ??= 'application/json; charset=utf-8';
  h['Content-Length'] = Buffer.byteLength(text);
  res.writeHead(status, h);
  res.end(text);
  res.logged?.(status, text);
}
const tokenError = (res, error, description) => send(res, 400, { error, error_description: description });
const unauthorized = (res, description) => send(res, 401, { error: 'invalid_token', error_description: description },
  { 'WWW-Authenticate': `Bearer error="invalid_token", error_description="${description}"` });

/** The bearer of an API call, checked as the platform checks it; answers 401 and returns false otherwise. */
function authorized(req, res) {
  const m = /^bearer\s+(\S+)$/i.exec(req.headers.authorization || '');
  if (!m) { unauthorized(res, 'No authentication bearer token specified in authorization header.'); return false; }
  const t = accessTokens.get(m[1]);
  if (!t) { unauthorized(res, 'Invalid token.'); return false; }
  if (Date.now() >= t.exp) { unauthorized(res, 'The access token expired.'); return false; }
  return true;
}

/** A body labelled JSON that is really a form (as the SDK posts to the token endpoint) reads as a form. */
function formOf(text) {
  const out = {};
  for (const part of text.split('&')) {
    if (!part) continue;
    const i = part.indexOf('=');
    const k = decodeURIComponent(i < 0 ? part : part.slice(0, i));
    out[k] = i < 0 ? '' : decodeURIComponent(part.slice(i + 1).replace(/\+/g, ' '));
  }
  return out;
}

function issueTokens(clientId, expiresIn) {
  tokensIssued += 1;
  const access = signJwt(userClaims(clientId, expiresIn));
  const id = signJwt(userClaims(clientId, expiresIn));
  const refresh = crypto.randomBytes(32).toString('base64url');
  accessTokens.set(access, { exp: Date.now() + expiresIn * 1000, clientId });
  refreshTokens.set(refresh, { clientId, live: true });
  return { access_token: access, token_type: 'Bearer', expires_in: expiresIn, refresh_token: refresh, id_token: id };
}

// ---- routes ----
function handle(req, res, body) {
  const host = (req.headers.host || '').replace(/:\d+$/, '').toLowerCase();
  const url = new URL(req.url, `https://${host || HOST}`);
  const p = url.pathname;
  const lp = p.toLowerCase();
  const m = req.method;

  if (host === HOST) {
    if (m === 'GET' && p === '/.well-known/openid-configuration') {
      return send(res, 200, {
        issuer: ISSUER,
        authorization_endpoint: `${ISSUER}/auth/authorize`,
        token_endpoint: `${ISSUER}/auth/token`,
        jwks_uri: `${ISSUER}/auth/jwks`,
        end_session_endpoint: `${ISSUER}/auth/logout`,
        response_types_supported: ['code', 'id_token', 'token id_token'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256'],
        scopes_supported: ['openid'],
        token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'none'],
        grant_types_supported: ['authorization_code', 'refresh_token', 'password', 'urn:ietf:params:oauth:grant-type:token-exchange'],
        display_values_supported: ['page', 'popup'],
        code_challenge_methods_supported: ['S256'],
        claims_supported: ['iss', 'aud', 'sub', 'tenantId', 'icAgentId', 'icBUId', 'icClusterId', 'userId', 'teamId', 'name', 'given_name', 'family_name'],
      });
    }
    if (m === 'GET' && p === '/auth/jwks') {
      return send(res, 200, { keys: [{ kty: 'RSA', kid: KID, n: jwk.n, e: jwk.e, alg: 'RS256', use: 'sig' }] });
    }
    if (m === 'GET' && p === '/auth/authorize') {
      // The SDK does not URL-encode its parameters; the redirect URI has no & in it.
      const q = url.searchParams;
      const clientId = q.get('client_id');
      const redirectUri = q.get('redirect_uri');
      if (!clientId || !redirectUri || q.get('response_type') !== 'code') {
        return send(res, 400, { error: 'invalid_request', error_description: 'client_id, redirect_uri and response_type=code are required.' });
      }
      if (q.get('code_challenge_method') !== 'S256' || !q.get('code_challenge')) {
        return send(res, 400, { error: 'invalid_request', error_description: 'PKCE with code_challenge_method=S256 is required.' });
      }
      const code = crypto.randomBytes(24).toString('base64url');
      codes.set(code, { clientId, redirectUri, challenge: q.get('code_challenge'), tenantId: q.get('tenantId') });
      const to = new URL(redirectUri);
      to.searchParams.set('code', code);
      if (q.get('state')) to.searchParams.set('state', q.get('state'));
      return send(res, 302, undefined, { Location: to.href });
    }
    if (m === 'POST' && p === '/auth/token') {
      const f = formOf(body.toString('utf8'));
      if (f.grant_type === 'authorization_code') {
        const grant = codes.get(f.code);
        if (!grant) return tokenError(res, 'invalid_grant', 'The authorization code is invalid or was already used.');
        codes.delete(f.code);
        if (f.client_id !== grant.clientId) return tokenError(res, 'invalid_grant', 'The code was issued to another client.');
        if (f.redirect_uri !== grant.redirectUri) return tokenError(res, 'invalid_grant', 'The redirect_uri does not match the authorization request.');
        const challenge = crypto.createHash('sha256').update(f.code_verifier || '').digest('base64url');
        if (challenge !== grant.challenge) return tokenError(res, 'invalid_grant', 'PKCE verification failed: the code_verifier does not match the code_challenge.');
        return send(res, 200, issueTokens(grant.clientId, tokensIssued === 0 ? FIRST_EXPIRES_IN : REFRESH_EXPIRES_IN));
      }
      if (f.grant_type === 'refresh_token') {
        const r = refreshTokens.get(f.refresh_token);
        if (!r || !r.live) return tokenError(res, 'invalid_grant', 'The refresh token is invalid or was already used.');
        r.live = false; // rotation
        const answer = issueTokens(r.clientId, REFRESH_EXPIRES_IN);
        refreshed = true;
        send(res, 200, answer);
        // The platform ends the agent session once the token was refreshed (after the call).
        setImmediate(maybeEndSession);
        return undefined;
      }
      return tokenError(res, 'unsupported_grant_type', `grant_type ${f.grant_type || '(none)'} is not supported.`);
    }
    if (m === 'GET' && p === '/.well-known/cxone-configuration') {
      if (url.searchParams.get('tenantId') !== TENANT_ID) {
        return send(res, 404, { error: 'not_found', error_description: 'Unknown tenant.' });
      }
      return send(res, 200, {
        private: false,
        area: AREA,
        cluster: CLUSTER,
        domain: DOMAIN,
        acdDomain: DOMAIN,
        uhDomain: DOMAIN,
        ui_endpoint: `https://${AREA}.${DOMAIN}`,
        auth_endpoint: `https://${AREA}.${DOMAIN}`,
        api_endpoint: `https://api-${AREA}.${DOMAIN}`,
        tenantId: TENANT_ID,
      });
    }
  }

  if (lp === '/incontactauthorizationserver/token/whoami' && m === 'POST') {
    let token;
    try { token = JSON.parse(body.toString('utf8')).token; } catch { /* below */ }
    const t = token && accessTokens.get(token);
    if (!t || Date.now() >= t.exp) return unauthorized(res, 'The token is not valid.');
    return send(res, 200, {
      agent_id: AGENT_ID,
      bus_no: BU_ID,
      expires_in: Math.max(0, Math.round((t.exp - Date.now()) / 1000)),
      iss: ISSUER,
      refresh_token_server_uri: `${ACD_BASE}/InContactAuthorizationServer/Token`,
      resource_server_base_uri: `${ACD_BASE}/inContactAPI/`,
      sub: `user:${USER_ID}`,
      team_id: TEAM_ID,
    });
  }

  // Everything below is an API call: the bearer must be one this platform issued and still live.
  if (!authorized(req, res)) return undefined;

  if (host === `na1.${DOMAIN}` && m === 'GET' && p === '/config/toggledFeatures') {
    return send(res, 200, { toggledFeatures: [] });
  }
  if (host === `api-${AREA}.${DOMAIN}` && m === 'GET' && p === `/user-management/v1/users/${USER_ID}`) {
    return send(res, 200, {
      user: {
        id: USER_ID,
        tenantId: TENANT_ID,
        userName: 'agent.smith@standin.example',
        firstName: 'Agent',
        lastName: 'Smith',
        emailAddress: 'agent.smith@standin.example',
        status: 'ACTIVE',
        agentId: Number(AGENT_ID),
        teamId: TEAM_ID,
        timeZone: 'America/Denver',
        customAttributes: {},
      },
    });
  }

  const api = /^\/incontactapi\/services\/(v\d+\.\d+)(\/.*)$/i.exec(p);
  if (api) return acd(req, res, m, api[1], api[2], url, body);

  return send(res, 404, { error: 'not_found', error_description: `No route for ${m} ${host}${p} on the stand-in.` });
}

function acd(req, res, m, version, rest, url, body) {
  const now = new Date();
  if (m === 'GET' && rest === '/business-unit') {
    return send(res, 200, {
      businessUnits: [{
        businessUnitId: Number(BU_ID),
        businessUnitName: 'Stand-in BU',
        isActive: true,
        timeZone: 'Mountain Standard Time',
        maxConferenceParties: 6,
        fileExtensions: '',
        isMultiContactHandling: false,
        isUnifiedRoutingEnabled: false,
        features: [{ productId: 30254, productName: 'UI Queue', isEnabled: false }],
      }],
    });
  }
  if (m === 'GET' && rest === `/agents/${AGENT_ID}/indicators`) {
    return send(res, 200, { indicators: [] });
  }
  if (m === 'GET' && rest === `/agents/${AGENT_ID}/agent-settings`) {
    return send(res, 200, { EnableUIQueue: false, maxConferenceParties: 6, webRTCType: 'None' });
  }
  if (m === 'GET' && rest === '/permissions' && url.searchParams.get('agentId') === AGENT_ID) {
    return send(res, 200, {
      permissions: [
        { Key: 'AgentSoftphone', Value: 'True' },
        { Key: 'MuteAgent', Value: 'True' },
        { Key: 'RecordContact', Value: 'False' },
      ],
    });
  }
  if (m === 'GET' && rest === '/server-time') {
    return send(res, 200, { ServerTime: now.toISOString(), ServerTimeZone: 'UTC' });
  }
  if (m === 'GET' && rest === `/agents/${AGENT_ID}/messages`) {
    return send(res, 200, { messages: [] });
  }
  let s;
  if ((s = /^\/skills\/(\d+)\/(dispositions|tags)$/.exec(rest)) && m === 'GET') {
    if (s[1] !== SKILL_ID) return send(res, 404, { error: 'not_found', error_description: 'Unknown skill.' });
    return send(res, 200, s[2] === 'dispositions'
      ? { skillId: Number(SKILL_ID), dispositions: [] }
      : { skillId: Number(SKILL_ID), tags: [] });
  }
  if ((s = /^\/skills\/(\d+)$/.exec(rest)) && m === 'GET') {
    if (s[1] !== SKILL_ID) return send(res, 404, { error: 'not_found', error_description: 'Unknown skill.' });
    return send(res, 200, {
      skills: [{ skillId: Number(SKILL_ID), skillName: 'Inbound Support', mediaTypeId: 4, mediaTypeName: 'Phone Call', isActive: true, isOutbound: false, campaignId: 1, campaignName: 'Support' }],
    });
  }
  if (m === 'POST' && rest === '/agent-sessions') {
    if (session && !session.ended) return send(res, 409, { error: 'SessionExists', error_description: 'The agent already has a session.' });
    let start;
    try { start = JSON.parse(body.toString('utf8') || '{}'); } catch {
      return send(res, 400, { error: 'InvalidRequest', error_description: 'The body is not JSON.' });
    }
    if (start.stationPhoneNumber === undefined && start.stationId === undefined) {
      return send(res, 400, { error: 'InvalidRequest', error_description: 'stationId or stationPhoneNumber is required.' });
    }
    session = newSession();
    send(res, 202, { sessionId: session.id });
    // The session's start, then the call waiting in the queue, offered once the session is up.
    setImmediate(() => {
      push({
        Type: 'AgentSessionStart',
        IISHost: `api-${CLUSTER.toLowerCase()}`,
        VCHost: `vc-${CLUSTER.toLowerCase()}`,
        BusNo: BU_ID,
        AgentId: AGENT_ID,
        StationId: STATION_ID,
        StationPhoneNumber: start.stationPhoneNumber ?? '',
        StationCallerId: '',
        SessionId: session.id,
        DialerCampaign: '',
        DialerCampaignStartTime: '',
        SupervisorPermissionLevel: '0',
        CanMask: 'False',
        AgentSchedulePermission: 'None',
        ScoreRecordingsPermission: 'False',
        HideAgentStatePermission: 'False',
        ClientConnectorPort: '0',
        CanMultiPartyConference: 'True',
        MaxConcurrentChats: '0',
        CanRecord: 'False',
        EnabledForMCH: 'False',
        UseCustomerCard: 'False',
        AgentUUId: USER_ID,
        EntityMode: 'False',
      });
      session.contact.offered = true;
      session.contact.started = new Date();
      session.contact.changed = session.contact.started;
      push(callContactEvent(session.contact));
    });
    return undefined;
  }
  if ((s = /^\/agent-sessions\/([^/]+)\/get-next-event$/.exec(rest)) && m === 'GET') {
    if (!session || s[1] !== session.id || session.ended) return sessionGone(res);
    if (session.poll) {
      // One poll at a time: the earlier one is answered as the platform does, with nothing.
      const old = session.poll;
      session.poll = null;
      clearTimeout(old.timer);
      send(old.res, 304);
    }
    const timeout = Math.min(Number(url.searchParams.get('timeout') || 60), POLL_HOLD_MAX_S);
    const timer = setTimeout(() => {
      if (session.poll?.res === res) { session.poll = null; send(res, 304); }
    }, timeout * 1000);
    session.poll = { res, timer };
    res.on('close', () => { if (session.poll?.res === res) { clearTimeout(timer); session.poll = null; } });
    flushPoll();
    return undefined;
  }
  if ((s = /^\/agent-sessions\/([^/]+)\/interactions\/([^/]+)\/(accept|hold|resume|end)$/.exec(rest)) && m === 'POST') {
    if (!session || s[1] !== session.id || session.ended) return sessionGone(res);
    if (s[2] !== CONTACT_ID) return send(res, 404, { error: 'InvalidContact', error_description: 'Unknown contact.' });
    const moves = { accept: ['Incoming', 'Active'], hold: ['Active', 'Holding'], resume: ['Holding', 'Active'], end: [null, 'Disconnected'] };
    const [from, to] = moves[s[3]];
    const c = session.contact;
    if ((from && c.status !== from) || c.status === 'Disconnected') {
      return send(res, 400, { error: 'InvalidState', error_description: `The contact is ${c.status}; ${s[3]} is not allowed.` });
    }
    send(res, 202);
    setImmediate(() => {
      c.status = to;
      c.changed = new Date();
      push(callContactEvent(c));
      if (to === 'Disconnected') setImmediate(maybeEndSession);
    });
    return undefined;
  }
  return send(res, 404, { error: 'not_found', error_description: `No route for ${m} ${version}${rest} on the stand-in.` });
}

// ---- servers ----
const tlsOptions = {
  key: fs.readFileSync(file('leaf-key.pem')),
  cert: fs.readFileSync(file('leaf.pem')),
};
const server = https.createServer(tlsOptions, (req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const started = new Date();
    res.logged = (status, text) => {
      log.write(JSON.stringify({
        at: started.toISOString(),
        ms: Date.now() - started.getTime(),
        method: req.method,
        host: req.headers.host,
        url: req.url,
        osi: req.headers['originating-service-identifier'],
        auth: req.headers.authorization ? req.headers.authorization.slice(0, 16) + '…' : undefined,
        body: body.length ? body.toString('utf8').slice(0, 400) : undefined,
        status,
        answer: text ? text.slice(0, 400) : undefined,
      }) + '\n');
    };
    try { handle(req, res, body); } catch (e) {
      process.stderr.write(`standin: ${req.method} ${req.url}: ${e.stack}\n`);
      if (!res.headersSent) send(res, 500, { error: 'internal', error_description: String(e.message) });
    }
  });
});
server.keepAliveTimeout = 75_000;
server.requestTimeout = 0;
server.headersTimeout = 20_000;

function listen(srv, p) {
  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(p, '127.0.0.1', () => resolve(srv.address().port));
  });
}

const tlsPort = await listen(server, port);
const ready = { port: tlsPort, ca: file('ca.pem') };
if (proxyPort !== '') {
  // CONNECT to any host lands on this stand-in's TLS port (debugging only).
  const proxy = http.createServer((req, res) => { res.writeHead(405); res.end(); });
  proxy.on('connect', (req, socket, head) => {
    const up = net.connect(tlsPort, '127.0.0.1', () => {
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    up.on('error', () => socket.destroy());
    socket.on('error', () => up.destroy());
  });
  ready.proxy = await listen(proxy, Number(proxyPort));
}
const line = JSON.stringify(ready);
if (readyFile) fs.writeFileSync(readyFile, line + '\n');
process.stdout.write(line + '\n');

const stop = () => { server.close(); server.closeAllConnections?.(); log.end(); process.exit(0); };
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
