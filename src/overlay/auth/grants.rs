//! The token endpoint's grants (client credentials, authorization code with PKCE, refresh with
//! rotation, NICE access keys and token exchange) and the headless sign-in redirect.

use super::*;

impl Auth {
    /// A token request, either platform: `grant_type` in a form body (also when the NICE SDK labels
    /// that body `application/json`), a JSON object body, or the access-key endpoint's JSON.
    pub(super) fn token_request(
        &self,
        call: &Call<'_>,
        ctx: &mut Ctx,
        ev: &Evidence<'_>,
        access_key: bool,
    ) -> Decision {
        let params = token_params(call.body, access_key);
        let basic = basic_pair(call.header("authorization"));
        let fresh = ev.peek().is_some_and(|p| p.fresh);
        tracing::debug!(
            recorded = ?ev.peek().map(|p| (p.exchange.seq, p.exchange.response.status, p.fresh)),
            "token request: the recording it would get"
        );
        // What the recording shows the platform answering these credentials comes first.
        let (accepted, shape) = match self.evidence_for(call, &params, basic.as_ref(), ev) {
            Verdict::Refuse(a) => {
                ctx.took_recording = fresh;
                tracing::info!(detail = %a.detail, status = a.status, "token request refused as the recording shows");
                return Decision::Answer(a);
            }
            Verdict::FollowCassette => return Decision::Continue,
            Verdict::Accept(shape) => (true, Some(shape)),
            Verdict::Unknown => {
                let shape = ev
                    .peek()
                    .filter(|p| p.fresh && (200..300).contains(&p.exchange.response.status))
                    .map(|p| answer_of(&p.exchange));
                // A recorded request sent again as recorded (`cassette check`): its secrets are the
                // redaction marker, and the recording says the platform accepted it here.
                let marker = crate::cassette::redact::MARKER;
                let redacted = call.header("authorization").is_some_and(|v| v.contains(marker))
                    || params.values().any(|v| v == marker);
                (redacted && shape.is_some(), shape)
            }
        };
        let ttl = shape.as_ref().and_then(recorded_ttl_s);
        let grant = params.get("grant_type").map(String::as_str).unwrap_or("");
        let marker = crate::cassette::redact::MARKER;
        let replayed_as_recorded =
            call.header("authorization").is_some_and(|v| v.contains(marker)) || params.values().any(|v| v == marker);
        if let (true, Some(sh)) =
            (accepted && (replayed_as_recorded || matches!(grant, "client_credentials" | "password")), &shape)
        {
            // The recording shows these credentials accepted here: tokens as the platform gave them.
            let platform = call.platform();
            // The user or key when one is presented, else the client.
            let ids = presented_by(platform, &params, basic.as_ref());
            let who = ids
                .iter()
                .find(|p| p.role != "client")
                .or_else(|| ids.first())
                .map(|p| p.id.clone())
                .or_else(|| ev.peek().and_then(|p| p.exchange.credentials.first().map(|c| c.id.clone())))
                // A refresh names no one: it continues the sign-in recorded before it on this host.
                .or_else(|| {
                    let seq = ev.peek()?.exchange.seq;
                    let tokens = ev.recorded.tokens();
                    let earlier = tokens.iter().rev().filter(|t| t.host == call.host && t.seq < seq);
                    earlier.filter_map(|t| t.credentials.first()).map(|c| c.id.clone()).next()
                })
                .unwrap_or_default();
            let with_refresh =
                serde_json::from_slice::<Value>(&sh.body).ok().is_some_and(|v| v.get("refresh_token").is_some());
            let grant = if grant.is_empty() { "client_credentials" } else { grant };
            let mut st = self.state();
            let issued =
                self.issue(&mut st, &who, platform, call.host, grant, with_refresh, ctx.now_ms, ttl, Some(ev.recorded));
            drop(st);
            ctx.took_recording = fresh;
            return match issued {
                Ok(i) => Decision::Answer(reshape(i.answer(), sh)),
                Err(a) => Decision::Answer(a),
            };
        }
        match self.grant(call, ctx, ev.recorded, &params, basic, accepted, ttl) {
            Decision::Answer(a) if a.detail == "token-issued" => match &shape {
                Some(sh) => {
                    ctx.took_recording = fresh;
                    Decision::Answer(reshape(a, sh))
                }
                None => Decision::Answer(a),
            },
            d => d,
        }
    }

    /// A token request by the rules of the platform (and the configured client list, unless the
    /// recording showed these credentials `accepted`); tokens live `ttl_s` when the recording
    /// shows how long.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn grant(
        &self,
        call: &Call<'_>,
        ctx: &mut Ctx,
        recorded: &Recorded,
        params: &HashMap<String, String>,
        basic: Option<(String, String)>,
        accepted: bool,
        ttl: Option<i64>,
    ) -> Decision {
        let platform = call.platform();
        let (client_id, secret) = match &basic {
            Some((id, s)) => (id.clone(), Some(s.clone())),
            None => (params.get("client_id").cloned().unwrap_or_default(), params.get("client_secret").cloned()),
        };
        let err = |status: u16, error: &str, description: &str, detail: &str| {
            Decision::Answer(self.refusal(recorded, token_error(platform, status, error, description, detail)))
        };
        let answer = |r: Result<Issue, Answer>| match r {
            Ok(i) => Decision::Answer(i.answer()),
            Err(a) => Decision::Answer(a),
        };
        let client_check =
            |id: &str, secret: Option<&str>| if accepted { ClientCheck::Ok } else { self.client_check(id, secret) };
        let client_refused = |check: ClientCheck| match check {
            ClientCheck::BadSecret => err(400, "invalid_client", "authentication failed", "invalid-client"),
            _ => err(400, "invalid_client", "client not found", "invalid-client"),
        };
        let grant = params.get("grant_type").cloned().unwrap_or_default();
        let now = ctx.now_ms;
        match grant.as_str() {
            "client_credentials" => {
                if !accepted && basic.is_none() && secret.is_none() {
                    return err(400, "invalid_client", "client not found", "invalid-client");
                }
                match client_check(&client_id, secret.as_deref()) {
                    ClientCheck::Ok => {}
                    c => return client_refused(c),
                }
                let mut st = self.state();
                answer(self.issue(
                    &mut st,
                    &client_id,
                    platform,
                    call.host,
                    &grant,
                    platform == Platform::Nice,
                    now,
                    ttl,
                    Some(recorded),
                ))
            }
            "password" if platform == Platform::Nice => {
                // NICE access keys: the key id and secret travel as username and password.
                let key_id = params.get("username").cloned().unwrap_or_default();
                let key_secret = params.get("password").cloned().unwrap_or_default();
                if key_id.is_empty() || key_secret.is_empty() {
                    return err(400, "invalid_request", "username and password are required", "invalid-request");
                }
                if basic.is_some() || !client_id.is_empty() {
                    if let c @ (ClientCheck::Unknown | ClientCheck::BadSecret) =
                        client_check(&client_id, secret.as_deref())
                    {
                        return client_refused(c);
                    }
                }
                match client_check(&key_id, Some(&key_secret)) {
                    ClientCheck::Ok => {}
                    _ => return err(401, "invalid_grant", "invalid access key", "invalid-access-key"),
                }
                let mut st = self.state();
                answer(self.issue(&mut st, &key_id, platform, call.host, &grant, true, now, ttl, Some(recorded)))
            }
            "authorization_code" => {
                self.code_grant(call, params, &client_id, secret.as_deref(), basic.is_some(), ctx, recorded, ttl)
            }
            "refresh_token" => {
                self.refresh(call, &client_id, secret.as_deref(), basic.is_some(), params, ctx, recorded, ttl)
            }
            "urn:ietf:params:oauth:grant-type:token-exchange" if platform == Platform::Nice => {
                let subject = params.get("subject_token").cloned().unwrap_or_default();
                let mut st = self.state();
                let owner = st
                    .tokens
                    .get(&subject)
                    .filter(|t| t.kind == Kind::Access && !t.revoked && t.expires_ms > now)
                    .map(|t| t.client_id.to_string());
                match owner {
                    Some(c) => {
                        answer(self.issue(&mut st, &c, platform, call.host, &grant, true, now, ttl, Some(recorded)))
                    }
                    None => err(400, "invalid_grant", "subject_token is invalid or expired", "invalid-grant"),
                }
            }
            "" => err(400, "invalid_request", "grant_type is required", "invalid-request"),
            other => err(
                400,
                "unsupported_grant_type",
                &format!("grant type {other} is not supported"),
                "unsupported-grant-type",
            ),
        }
    }

    /// The authorization-code grant, with or without PKCE.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn code_grant(
        &self,
        call: &Call<'_>,
        params: &HashMap<String, String>,
        client_id: &str,
        secret: Option<&str>,
        confidential: bool,
        ctx: &Ctx,
        recorded: &Recorded,
        ttl: Option<i64>,
    ) -> Decision {
        let platform = call.platform();
        let err = |status: u16, error: &str, description: &str, detail: &str| {
            Decision::Answer(self.refusal(recorded, token_error(platform, status, error, description, detail)))
        };
        let verifier = params.get("code_verifier");
        if client_id.is_empty() || (!confidential && verifier.is_none()) {
            return err(400, "invalid_client", "client not found", "invalid-client");
        }
        match self.client_check(client_id, if confidential { secret } else { None }) {
            ClientCheck::Ok => {}
            ClientCheck::BadSecret if !confidential => {}
            ClientCheck::BadSecret => return err(400, "invalid_client", "authentication failed", "invalid-client"),
            ClientCheck::Unknown => return err(400, "invalid_client", "client not found", "invalid-client"),
        }
        let now = ctx.now_ms;
        let mut st = self.state();
        let Some(code) = params.get("code").and_then(|c| st.codes.remove(c)) else {
            return err(400, "invalid_grant", "authorization code not found or already used", "invalid-grant");
        };
        if code.expires_ms <= now || code.client_id != client_id {
            return err(
                400,
                "invalid_grant",
                "authorization code expired or issued to another client",
                "invalid-grant",
            );
        }
        if let (Some(want), Some(got)) = (&code.redirect_uri, params.get("redirect_uri")) {
            if want != got {
                return err(
                    400,
                    "invalid_grant",
                    "redirect_uri does not match the authorization request",
                    "invalid-grant",
                );
            }
        }
        match (&code.challenge, verifier) {
            (Some((method, challenge)), Some(v)) => {
                let computed = if method.eq_ignore_ascii_case("plain") { v.clone() } else { s256(v) };
                if &computed != challenge {
                    return err(
                        400,
                        "invalid_grant",
                        "code_verifier does not match the code_challenge",
                        "invalid-grant",
                    );
                }
            }
            (Some(_), None) => return err(400, "invalid_grant", "code_verifier is required", "invalid-grant"),
            (None, Some(_)) => {
                return err(
                    400,
                    "invalid_grant",
                    "no code_challenge was sent with the authorization request",
                    "invalid-grant",
                )
            }
            (None, None) => {}
        }
        match self.issue(&mut st, client_id, platform, call.host, "authorization_code", true, now, ttl, Some(recorded))
        {
            Ok(i) => Decision::Answer(i.answer()),
            Err(a) => Decision::Answer(a),
        }
    }

    /// A refresh-token grant: rotation, reuse rejection, and the concurrency rule.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn refresh(
        &self,
        call: &Call<'_>,
        client_id: &str,
        secret: Option<&str>,
        confidential: bool,
        params: &HashMap<String, String>,
        ctx: &mut Ctx,
        recorded: &Recorded,
        ttl: Option<i64>,
    ) -> Decision {
        let platform = call.platform();
        let err = |status: u16, error: &str, description: &str, detail: &str| {
            Decision::Answer(self.refusal(recorded, token_error(platform, status, error, description, detail)))
        };
        let now = ctx.now_ms;
        let Some(presented) = params.get("refresh_token").filter(|r| !r.is_empty()) else {
            return err(400, "invalid_request", "refresh_token is required", "invalid-request");
        };
        let mut st = self.state();
        // A public client may send no client id: the token names its client.
        let owner = st.tokens.get(presented.as_str()).map(|t| t.client_id.to_string());
        let client = if client_id.is_empty() { owner.clone().unwrap_or_default() } else { client_id.to_string() };
        if confidential {
            match self.client_check(&client, secret) {
                ClientCheck::Ok => {}
                ClientCheck::BadSecret => return err(400, "invalid_client", "authentication failed", "invalid-client"),
                ClientCheck::Unknown => return err(400, "invalid_client", "client not found", "invalid-client"),
            }
        }
        if let Some(&until) = st.refreshing.get(&client) {
            if until > now {
                return match self.cfg.concurrent_refresh {
                    ConcurrentRefresh::Queue => Decision::RetryAt(until),
                    ConcurrentRefresh::Reject => err(
                        409,
                        "refresh_in_progress",
                        "a token refresh for this client is already in progress",
                        "concurrent-refresh",
                    ),
                };
            }
            st.refreshing.remove(&client);
        }
        let valid = st
            .tokens
            .get(presented.as_str())
            .is_some_and(|t| t.kind == Kind::Refresh && !t.revoked && t.expires_ms > now && *t.client_id == *client);
        if !valid {
            return err(400, "invalid_grant", "refresh token is invalid, expired or already used", "refresh-rejected");
        }
        if let Some(t) = st.tokens.get_mut(presented.as_str()) {
            t.revoked = true;
        }
        let mut answer =
            match self.issue(&mut st, &client, platform, call.host, "refresh_token", true, now, ttl, Some(recorded)) {
                Ok(i) => i.answer(),
                Err(a) => return Decision::Answer(a),
            };
        if self.cfg.refresh_delay_ms > 0 {
            let until = now + self.cfg.refresh_delay_ms as i64;
            st.refreshing.insert(client, until);
            answer.not_before_ms = Some(until);
        }
        Decision::Answer(answer)
    }

    /// `GET /oauth/authorize` (Genesys) or `/auth/authorize` (NICE): answered at once with the
    /// redirect a signed-in user would get, so the code and implicit grants work headless.
    pub(super) fn authorize(&self, call: &Call<'_>, ctx: &Ctx) -> Decision {
        let platform = call.platform();
        let q = form(call.query.unwrap_or(""));
        let bad = |error: &str, description: &str| {
            Decision::Answer(token_error(platform, 400, error, description, "authorize-refused"))
        };
        let client_id = q.get("client_id").cloned().unwrap_or_default();
        let Some(redirect) = q.get("redirect_uri").filter(|r| !r.is_empty()).cloned() else {
            return bad("invalid_request", "redirect_uri is required");
        };
        if self.client_check(&client_id, None) == ClientCheck::Unknown {
            return bad("invalid_client", "client not found");
        }
        let state = q.get("state");
        let sep = if redirect.contains('?') { '&' } else { '?' };
        let enc = crate::encoding::percent_encode;
        let with_state = |mut l: String| {
            if let Some(s) = state {
                l.push_str(&format!("&state={}", enc(s)));
            }
            l
        };
        let location = match q.get("response_type").map(String::as_str).unwrap_or("code") {
            "code" => {
                let code = URL_SAFE_NO_PAD.encode(self.ids.bytes(24));
                let challenge = q
                    .get("code_challenge")
                    .map(|c| (q.get("code_challenge_method").cloned().unwrap_or_else(|| "plain".into()), c.clone()));
                self.state().codes.insert(
                    code.clone(),
                    Code {
                        client_id,
                        redirect_uri: Some(redirect.clone()),
                        challenge,
                        expires_ms: ctx.now_ms + CODE_TTL_MS,
                    },
                );
                with_state(format!("{redirect}{sep}code={}", enc(&code)))
            }
            "token" if platform == Platform::Genesys => {
                let mut st = self.state();
                let i = match self
                    .issue(&mut st, &client_id, platform, call.host, "implicit", false, ctx.now_ms, None, None)
                {
                    Ok(i) => i,
                    Err(a) => return Decision::Answer(a),
                };
                with_state(format!(
                    "{redirect}#access_token={}&token_type=bearer&expires_in={}",
                    enc(&i.access),
                    i.expires_in
                ))
            }
            other => return bad("unsupported_response_type", &format!("response type {other} is not supported")),
        };
        Decision::Answer(Answer {
            status: 302,
            headers: vec![("location".into(), location)],
            body: bytes::Bytes::new(),
            detail: "authorize-redirect".into(),
            not_before_ms: None,
            basis: crate::overlay::Basis::Run,
        })
    }
}

/// The PKCE `S256` challenge of `verifier`: base64url (no padding) of its SHA-256 (RFC 7636).
pub(super) fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()))
}

/// A token endpoint's error in the platform's shape.
pub(super) fn token_error(platform: Platform, status: u16, error: &str, description: &str, detail: &str) -> Answer {
    Answer::json(status, &platform.token_error(error, description), detail)
}
