"""Every helper of the `callvcr` fixture against the real binary: tokens, the clock, call
states, WebSocket events, faults, the journal and admin errors."""

from support import exchange, run, write_cassette

CONV = "5b4c1a7e-2f5e-4c47-9d0e-1f2a3b4c5d6e"
AGENT = "7d1e2f3a-0b1c-4d5e-8f9a-0b1c2d3e4f5a"
CUSTOMER = "8e2f3a4b-1c2d-4e5f-9a0b-1c2d3e4f5a6b"
# A Genesys call as the platform shows it (taken from examples/genesys-call.jsonl): the state
# overlay tracks the conversation and its participants from this answer.
CALL = {
    "id": CONV,
    "startTime": "2026-01-05T08:59:00.000Z",
    "participants": [
        {"id": AGENT, "purpose": "agent", "state": "connected", "held": False},
        {"id": CUSTOMER, "purpose": "customer", "state": "connected", "held": False},
    ],
}


def cassette(directory, name):
    write_cassette(directory, name, [
        exchange(1, "/api/v2/users/me", {"id": "u-1", "name": "Agent Smith"}),
        exchange(2, "/api/v2/routing/queues", {"entities": [], "total": 0}),
        exchange(3, f"/api/v2/conversations/calls/{CONV}", CALL),
    ])


def test_expire_tokens_makes_the_next_call_401(inner):
    cassette(inner.path, "test_tokens")
    inner.makepyfile(test_tokens=r'''
        def test_expire(callvcr, http):
            http.sign_in("c1", "s1")
            assert http.api("GET", "/api/v2/users/me").status == 200
            assert callvcr.expire_tokens(client_id="someone-else") == 0
            assert callvcr.expire_tokens(client_id="c1") == 1
            r = http.api("GET", "/api/v2/users/me")
            assert (r.status, r.json["code"]) == (401, "credentials.expired"), r.raw
            assert [(e["answered_by"], e.get("detail")) for e in callvcr.journal()] == [
                ("overlay:auth", "token-issued"), ("hit", None), ("overlay:auth", "expired-token")]
            # A new sign-in works again; expiring every token counts it.
            http.sign_in("c1", "s1")
            assert callvcr.expire_tokens() == 1
    ''')
    run(inner).assert_outcomes(passed=1)


def test_clock_helpers_move_the_frozen_clock(inner):
    cassette(inner.path, "test_clock")
    inner.makepyfile(test_clock=r'''
        import json, urllib.request
        import pytest

        def admin_clock(callvcr):
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(callvcr.admin_url + "/mock/admin/clock") as r:
                return json.load(r)["now"]

        @pytest.mark.callvcr(clock_frozen=True, clock_start="2030-01-01T00:00:00Z")
        def test_frozen_clock(callvcr):
            assert admin_clock(callvcr) == callvcr.clock() == "2030-01-01T00:00:00.000Z"
            assert callvcr.advance_clock(1500) == "2030-01-01T00:00:01.500Z"
            assert admin_clock(callvcr) == "2030-01-01T00:00:01.500Z"
            assert callvcr.set_clock("2031-05-06T07:08:09Z") == "2031-05-06T07:08:09.000Z"
            assert admin_clock(callvcr) == "2031-05-06T07:08:09.000Z"
            assert callvcr.server.health()["clock"]["frozen"] is True

        def test_default_clock_ticks(callvcr):
            assert callvcr.server.health()["clock"]["frozen"] is False
    ''')
    run(inner).assert_outcomes(passed=2)


def test_transition_and_release_move_calls_and_raise_admin_errors(inner):
    cassette(inner.path, "test_calls")
    # A generic machine whose answer waits for the admin API's release.
    inner.path.joinpath("proxy.yaml").write_text(
        "state:\n  machines:\n    - name: generic\n      hold: [{from: RINGING, to: ANSWERED}]\n"
    )
    inner.makepyfile(test_calls=rf'''
        import pytest
        from callvcr import CallvcrAdminError

        CONV, CUSTOMER = "{CONV}", "{CUSTOMER}"

        def customer_state(http):
            r = http.api("GET", "/api/v2/conversations/calls/" + CONV)
            assert r.status == 200, r.raw
            return next(p["state"] for p in r.json["participants"] if p["purpose"] == "customer")

        def test_the_customer_hangs_up(callvcr, http):
            http.sign_in()
            assert callvcr.session(CONV)["state"] == "connected"
            moved = callvcr.transition(CONV, "disconnected", from_="connected", metadata={{"reason": "test"}})
            assert (moved["state"], moved["participantId"]) == ("disconnected", CUSTOMER)
            # The call read back shows it, though the recording shows the customer connected.
            assert customer_state(http) == "disconnected"
            history = callvcr.session(CONV)["history"]
            assert [(h["from"], h["to"], h["by"], h["metadata"]) for h in history] == [
                ("connected", "disconnected", "admin", {{"reason": "test"}})]
            with pytest.raises(CallvcrAdminError) as e:
                callvcr.transition(CONV, "connected")
            assert (e.value.status, e.value.error) == (422, "invalid_transition")
            assert "allowed from here: terminated" in e.value.message
            with pytest.raises(CallvcrAdminError) as e:
                callvcr.transition(CONV, "terminated", from_="connected")
            assert e.value.status == 409

        def test_a_held_move_waits_for_release(callvcr):
            assert callvcr.transition("s-1", "RINGING")["state"] == "RINGING"
            held = callvcr.transition("s-1", "ANSWERED")
            assert (held["state"], held["held"]) == ("RINGING", "ANSWERED")
            assert callvcr.release("s-1")["state"] == "ANSWERED"
            with pytest.raises(CallvcrAdminError) as e:
                callvcr.release("s-1")
            assert (e.value.status, e.value.error) == (409, "conflict")

        def test_an_unknown_session_is_404(callvcr):
            with pytest.raises(CallvcrAdminError) as e:
                callvcr.session("never-seen")
            assert (e.value.status, e.value.error) == (404, "not_found")
    ''')
    run(inner).assert_outcomes(passed=3)


def test_push_event_answers_how_many_sessions_got_it(inner):
    cassette(inner.path, "test_events")
    inner.makepyfile(test_events=r'''
        import pytest
        from callvcr import CallvcrAdminError

        def test_no_session_open(callvcr):
            event = {"topicName": "v2.users.u-1.presence", "eventBody": {"presenceDefinition": {"id": "x"}}}
            assert callvcr.push_event(event) == 0
            assert callvcr.push_event(event, topic="v2.users.u-1.presence", delay_ms=10) == 0

        def test_an_unknown_session_is_refused(callvcr):
            with pytest.raises(CallvcrAdminError) as e:
                callvcr.push_event({"a": 1}, session="nope")
            assert e.value.status == 404 and "nope" in e.value.message
    ''')
    run(inner).assert_outcomes(passed=2)


def test_fault_is_a_context_manager_and_never_outlives_its_test(inner):
    cassette(inner.path, "test_faults")
    inner.makepyfile(test_faults=r'''
        import pytest
        from callvcr import CallvcrAdminError

        def test_503_inside_the_with_200_after(callvcr, http):
            http.sign_in()
            with callvcr.fault("status", status=503, match={"path": "/api/v2/users/me"}) as f:
                assert [r["id"] for r in callvcr.server.faults()] == [f.id]
                r = http.api("GET", "/api/v2/users/me")
                assert r.status == 503 and r.headers["x-callvcr-fault"] == "status", r.raw
                # Other paths are untouched.
                assert http.api("GET", "/api/v2/routing/queues").status == 200
            assert callvcr.server.faults() == []
            r = http.api("GET", "/api/v2/users/me")
            assert r.status == 200, r.raw
            assert [e["answered_by"] for e in callvcr.journal()][1:] == ["fault:status", "hit", "hit"]

        def test_left_in_place(callvcr):
            callvcr.fault("status", status=500, match={"path": "/api/v2/routing/queues"})

        def test_removed_when_the_test_before_ended(callvcr):
            assert callvcr.server.faults() == []

        def test_a_bad_rule_is_refused(callvcr):
            with pytest.raises(CallvcrAdminError) as e:
                callvcr.fault("nope")
            assert (e.value.status, e.value.error) == (400, "bad_fault")
    ''')
    run(inner).assert_outcomes(passed=4)


def test_journal_and_misses_are_this_tests_own(inner):
    cassette(inner.path, "test_journal")
    inner.makepyfile(test_journal=r'''
        import pytest

        pytestmark = pytest.mark.callvcr(overlays_off=["auth"])

        def test_one(callvcr, http):
            assert http.api("GET", "/api/v2/users/me").status == 200
            assert [e["path"] for e in callvcr.journal()] == ["/api/v2/users/me"]

        def test_two(callvcr, http):
            assert http.api("GET", "/api/v2/routing/queues").status == 200
            entries = callvcr.journal()
            assert [(e["path"], e["scope"]) for e in entries] == [("/api/v2/routing/queues", callvcr.scope)]
            assert callvcr.misses() == []
            assert callvcr.summary()["hits"] == 1
            # Both tests' requests are in the process's journal.
            assert len(callvcr.server.journal()) == 2
    ''')
    run(inner).assert_outcomes(passed=2)
