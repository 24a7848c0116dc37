"""Who is signed in, for the Streamlit UI: session state, the sign-in form and the sign-in cookie.

The only module that imports ``streamlit_authenticator``. It returns ``portal.signin.SignedIn``
(``.actor`` is the ``Actor`` every write is attributed to); pages reach it through
``portal.ui.require``.

How the library is used, and why not its login widget
    ``Authenticate.login()`` checks passwords against a credentials dict held in the Streamlit
    process and counts failed attempts in that dict: per process, shared by every session, lost on
    restart, and with no hook where a lock-out kept in PostgreSQL could refuse an attempt before
    the password is checked. It also re-reads nothing on later reruns, so a disabled user would
    keep their session. So the form here is a plain ``st.form``, and every rule (the password
    check, lock-out, events, revocation) is ``portal.signin``'s, tested without Streamlit. The
    library's ``forgot_password`` and ``register_user`` widgets are not offered: an admin resets
    passwords and creates accounts.

    The library provides the cookie. Its ``CookieModel`` (``extra_streamlit_components``'
    ``CookieManager`` inside) writes the browser cookie, and the token keeps the library's
    format, an HS256 JWT with ``username`` and ``exp_date``, signed with ``PORTAL_COOKIE_KEY``
    (``Settings.cookie_secret()``), never the library's default ``some_key``. Three differences,
    all for safety:

    * The token also carries ``signed_in_us``, when the sign-in began (microseconds since the
      epoch, exact). ``portal.signin.resume`` refuses a cookie whose sign-in is older than the
      account's last password change or its owner's last sign-out, so signing out or a password
      reset ends every copy of the cookie, not only the one in this browser.
    * Tokens are decoded by ``decode_token`` here, which refuses anything that is not exactly what
      ``encode_token`` writes (any signature, algorithm, type or expiry problem) without raising.
      The library's ``CookieModel._token_decode`` lets some malformed tokens raise.
    * The cookie is deleted by a few lines of the portal's own JavaScript (``_DELETE_COOKIE_JS``),
      which delete a refused cookie only while the browser still holds the value refused. The
      library's deletion deletes whatever the cookie holds, and again at each redraw of its
      iframe (every run until it reports back, and whenever Streamlit re-sends its arguments):
      a good cookie set after a refused one, in the seconds the deletion takes, was deleted with
      it.

    A cookie set from JavaScript cannot be ``HttpOnly``; it is ``SameSite=Strict``, ``Secure``
    when the portal is served over https, and gives nothing without the database agreeing on
    every rerun.

Every rerun (``current``) re-reads the account from PostgreSQL: a disabled, locked or deleted
account, a changed role or password take effect at the person's next click, cookie or not.

``st.context.cookies`` holds the cookies of the request that opened the WebSocket, so the cookie is
read once per browser session; writes and deletes are queued in session state and done by the next
``current()`` call (the component needs a script run to render in).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import streamlit as st
from streamlit.errors import StreamlitDuplicateElementKey
from streamlit_authenticator.models import CookieModel

from portal import signin
from portal.config import MIN_COOKIE_KEY_BYTES, cookie_key_problem, get_settings
from portal.errors import AuthError, ConfigError, PortalError
from portal.signin import SignedIn
from portal.users import USERNAME_RE

_USERNAME = "portal.auth.username"
_SINCE = "portal.auth.since"
_COOKIE_READ = "portal.auth.cookie_read"
_COOKIE_OP = "portal.auth.cookie_op"
_NOTICE = "portal.auth.notice"
_OWNER = "portal.auth.owner"  # whose work the pages' session state holds
_EXPIRES = "portal.auth.expires"  # when the sign-in's cookie expires: the session ends too
SIGN_IN_EXPIRED = "Your sign-in has expired. Sign in again."

# Deletes the cookie ``name`` if the browser holds it with ``value`` (or with any value, if
# ``value`` is null), then reports done. Run again whenever Streamlit draws it anew, so it must stay
# harmless to repeat: it never deletes a value it was not asked to. ``value`` is the value as the
# server read it: a value in double quotes reaches it unquoted and unescaped (Python's
# ``http.cookies._unquote``, which ``unquote`` mirrors), so the held values are compared as both.
_DELETE_COOKIE_JS = r"""
const unquote = (v) =>
  v.length >= 2 && v.startsWith('"') && v.endsWith('"')
    ? v.slice(1, -1).replace(/\\(?:([0-3][0-7][0-7])|(.))/g,
        (_, octal, char) => (octal ? String.fromCharCode(parseInt(octal, 8)) : char))
    : v;
export default function ({ data, setStateValue }) {
  const { name, value, secure } = data;
  const held = document.cookie
    .split("; ")
    .filter((pair) => pair.startsWith(name + "="))
    .map((pair) => pair.slice(name.length + 1));
  const asRead = held.flatMap((v) => [v, unquote(v)]);
  if (held.length > 0 && (value === null || asRead.includes(value))) {
    document.cookie = name + "=; Path=/; Max-Age=0; SameSite=Strict" + (secure ? "; Secure" : "");
  }
  setStateValue("done", true);
}
"""
_delete_cookie = st.components.v2.component("portal_delete_cookie", js=_DELETE_COOKIE_JS)

ALGORITHM = "HS256"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_CLOCK_SKEW = timedelta(minutes=5)


# -- the token --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CookieClaims:
    username: str
    since: datetime
    expires_at: datetime


def _microseconds(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def encode_token(username: str, *, key: str, since: datetime, expires_at: datetime) -> str:
    """The signed sign-in token: the library's claims plus when the sign-in began."""
    payload = {
        "username": username,
        "exp_date": expires_at.timestamp(),
        "signed_in_us": _microseconds(since),
    }
    return jwt.encode(payload, key, algorithm=ALGORITHM)


def decode_token(token: str, *, key: str, now: datetime) -> CookieClaims | None:
    """The claims of a token this portal signed with ``key`` and that has not expired, else None.

    Refuses (returns None for) a token signed with any other key or algorithm, a malformed or
    expired one, or one whose sign-in lies in the future.
    """
    try:
        payload = jwt.decode(token, key, algorithms=[ALGORITHM])
    except (jwt.InvalidTokenError, TypeError, ValueError):
        return None
    username = payload.get("username")
    exp_date = payload.get("exp_date")
    since_us = payload.get("signed_in_us")
    if not isinstance(username, str) or not USERNAME_RE.fullmatch(username):
        return None
    if isinstance(exp_date, bool) or not isinstance(exp_date, int | float):
        return None
    if isinstance(since_us, bool) or not isinstance(since_us, int):
        return None
    try:
        expires_at = datetime.fromtimestamp(exp_date, UTC)
        since = EPOCH + timedelta(microseconds=since_us)
    except (OverflowError, OSError, ValueError):
        return None
    if expires_at <= now or since > now + MAX_CLOCK_SKEW:
        return None
    return CookieClaims(username=username, since=since, expires_at=expires_at)


def cookie_key() -> str:
    """The key that signs sign-in cookies.

    Raises:
        ConfigError: the key is a placeholder (the library's ``some_key`` included), short or
            a repeat of a few characters.
    """
    key = get_settings().cookie_secret()
    if cookie_key_problem(key) is not None:
        raise ConfigError(
            f"PORTAL_COOKIE_KEY is a placeholder, shorter than {MIN_COOKIE_KEY_BYTES} bytes or a "
            "repeat of a few characters, so sign-in cookies could be forged; set it to a random "
            "value, e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))'."
        )
    return key


# -- the browser session ----------------------------------------------------------------------


def client_info() -> dict[str, Any]:
    """What the audit log keeps about the browser: address and user agent, when known."""
    info: dict[str, Any] = {}
    ip = st.context.ip_address
    if isinstance(ip, str) and ip:
        info["ip"] = ip
    headers = st.context.headers
    for header, field in (("X-Forwarded-For", "forwarded_for"), ("User-Agent", "user_agent")):
        value = headers.get(header)
        if isinstance(value, str) and value:
            info[field] = value[:300]
    return info


def current() -> SignedIn | None:
    """The signed-in person, re-read from PostgreSQL now; None if nobody is signed in.

    Restores a sign-in from the cookie once per browser session. Ends the session (with a notice
    for the sign-in form) when the account was disabled, locked, deleted, had its password changed
    or was signed out elsewhere, or when its cookie expired (a tab left open for days would
    otherwise outlive it).

    Raises:
        DatabaseUnavailable: PostgreSQL could not be reached.
        ConfigError: the cookie key is unsafe.
    """
    state = st.session_state
    try:
        username = state.get(_USERNAME)
        if username is None:
            return _from_cookie()
        expires_at = state.get(_EXPIRES)
        if expires_at is not None and expires_at <= datetime.now(UTC):
            _forget(notice=SIGN_IN_EXPIRED)
            return None
        try:
            return signin.resume(username, since=state[_SINCE])
        except AuthError as exc:
            _forget(notice=str(exc))
            return None
    finally:
        _apply_cookie_op()


def _from_cookie() -> SignedIn | None:
    state = st.session_state
    if state.get(_COOKIE_READ):
        return None
    token = st.context.cookies.get(get_settings().cookie_name)
    if not isinstance(token, str) or not token:  # (AppTest's stand-in context gives a mock)
        state[_COOKIE_READ] = True
        return None
    claims = decode_token(token, key=cookie_key(), now=datetime.now(UTC))
    if claims is None:
        _refuse(token, _claimed_username(token), "bad_cookie")
        return None
    try:
        signed = signin.resume(
            claims.username, since=claims.since, client_info=client_info(), from_cookie=True
        )
    except AuthError as exc:
        # Said as at a click in an open tab ("…because the password was changed"): a tab opened
        # or reloaded after it said nothing. The cookie is signed: whoever holds it was told
        # the same wherever it was used.
        _refuse(token, claims.username, "revoked_cookie", notice=str(exc))
        return None
    state[_COOKIE_READ] = True
    _take_over(signed.username)
    state[_USERNAME] = signed.username
    state[_SINCE] = signed.since
    state[_EXPIRES] = claims.expires_at
    return signed


def _refuse(token: str, claimed: str, reason: str, *, notice: str | None = None) -> None:
    """Sign nobody in from ``token``: queue its deletion (of this value only), with ``notice``
    for the sign-in form, and record the refusal under the username it ``claimed``."""
    _forget(notice, refused=token)
    signin.record_refused_cookie(claimed, reason=reason, client_info=client_info())


def _claimed_username(token: str) -> str:
    """The username a refused token names, unverified (for the audit log only), or "" if it
    names none."""
    try:
        payload = jwt.decode(token, options={"verify_signature": False})
    except (jwt.InvalidTokenError, TypeError, ValueError):
        return ""
    username = payload.get("username") if isinstance(payload, dict) else None
    return username if isinstance(username, str) else ""


def _take_over(username: str) -> None:
    """Before ``username`` signs in to this browser session: if the pages' state (unsaved
    edits, a typed reason, an open dialog, filters, results) is someone else's, drop it, so
    that nobody commits, confirms or reads what the person before them left behind."""
    state = st.session_state
    if state.get(_OWNER) != username:
        for key in list(state.keys()):
            if not str(key).startswith("portal.auth."):
                del state[key]
    state[_OWNER] = username


def _begin(signed: SignedIn) -> None:
    """Remember a sign-in in this session and queue its cookie."""
    expires_at = datetime.now(UTC) + timedelta(days=get_settings().cookie_expiry_days)
    token = encode_token(
        signed.username, key=cookie_key(), since=signed.since, expires_at=expires_at
    )
    state = st.session_state
    _take_over(signed.username)
    state[_USERNAME] = signed.username
    state[_SINCE] = signed.since
    state[_EXPIRES] = expires_at
    state[_COOKIE_READ] = True
    state[_COOKIE_OP] = ("set", secrets.token_hex(8), token, expires_at)
    state.pop(_NOTICE, None)


def _forget(notice: str | None = None, *, refused: str | None = None) -> None:
    """End the sign-in in this session and queue the cookie's deletion: of the value ``refused``
    only, when that is why (a cookie pasted or set since is not this session's to delete), else
    of whatever the cookie holds."""
    state = st.session_state
    state.pop(_USERNAME, None)
    state.pop(_SINCE, None)
    state.pop(_EXPIRES, None)
    # The cookies this session was opened with are stale now: never read them again.
    state[_COOKIE_READ] = True
    state[_COOKIE_OP] = ("delete", secrets.token_hex(8), refused)
    if notice:
        state[_NOTICE] = notice


def _apply_cookie_op() -> None:
    """Draw the queued cookie write or deletion, in every run until the browser reports it done.

    A run replaced by the next one before the browser drew its component never writes or
    deletes the cookie, so the operation stays queued, drawn again under the same key (one
    component for its whole life), until the component's value says it ran. ``current()`` runs
    twice in a run (app.py, then the page's guard): the second draw is skipped."""
    op = st.session_state.get(_COOKIE_OP)
    if op is None:
        return
    settings = get_settings()
    secure = (st.context.url or "").startswith("https:")
    method, nonce, *args = op  # the nonce keys one component per queued operation
    key = f"portal.auth.cookie_{method}.{nonce}"
    try:
        if method == "set":
            token, expires_at = args
            model = CookieModel(
                cookie_name=settings.cookie_name,
                cookie_key=cookie_key(),
                cookie_expiry_days=settings.cookie_expiry_days,
            )
            component = model.cookie_manager.cookie_manager  # extra_streamlit_components' own
            options = {"path": "/", "expires": expires_at.isoformat(), "sameSite": "strict"}
            done = component(
                method="set",
                cookie=settings.cookie_name,
                value=token,
                options=options | ({"secure": True} if secure else {}),
                key=key,
                default=False,
            )
        else:
            (refused,) = args
            done = _delete_cookie(
                key=key,
                data={"name": settings.cookie_name, "value": refused, "secure": secure},
                default={"done": False},
                on_done_change=_ignore,
            ).done
    except StreamlitDuplicateElementKey:
        return  # drawn already in this run
    if done:
        st.session_state.pop(_COOKIE_OP, None)


def _ignore() -> None:
    """``on_done_change`` of the deletion: a component's state needs a callback; the next run
    reads it."""


def change_own_password(*, current_password: str, new_password: str, confirm_password: str) -> None:
    """Change the signed-in person's password; this session goes on (a new sign-in time and
    cookie), every other session and cookie of theirs ends.

    Raises:
        AuthError: nobody is signed in, or the account is (now) locked or disabled.
        ValidationError: see ``portal.signin.change_own_password``.
    """
    username = st.session_state.get(_USERNAME)
    if username is None:
        raise AuthError("You are not signed in.")
    signed = signin.change_own_password(
        username,
        current_password=current_password,
        new_password=new_password,
        confirm_password=confirm_password,
        client_info=client_info(),
    )
    _begin(signed)


def sign_out() -> None:
    """Sign out (a button's ``on_click``): recorded, and every earlier session and cookie ends;
    only this browser's when this session had ended already (its click runs before ``current``
    re-reads it)."""
    state = st.session_state
    username = state.get(_USERNAME)
    notice = "You have signed out."
    if username is not None:
        try:
            signin.sign_out(username, since=state[_SINCE], client_info=client_info())
        except AuthError as exc:  # the session had ended already: why, and nothing recorded
            notice = str(exc)
        except PortalError as exc:
            notice = f"You are signed out in this browser, but it could not be recorded: {exc}"
    _forget(notice=notice)


# -- the form ---------------------------------------------------------------------------------


def login_form() -> None:
    """The sign-in form; on success the session is signed in and the script reruns."""
    # Kept until the form is used: the run that shows it also draws the cookie's deletion,
    # whose completion reruns the page (and a notice popped at once vanished with that rerun).
    notice = st.session_state.get(_NOTICE)
    _, column, _ = st.columns([1, 2, 1])
    with column:
        st.title("Data Portal")
        if notice:
            st.info(notice, icon=":material/info:")
        with st.form("portal.sign_in", clear_on_submit=True):
            st.subheader("Sign in")
            username = st.text_input("Username", key="sign_in.username", autocomplete="username")
            password = st.text_input(
                "Password",
                type="password",
                key="sign_in.password",
                autocomplete="current-password",
            )
            submitted = st.form_submit_button("Sign in", type="primary", key="sign_in.submit")
        if not submitted:
            return
        st.session_state.pop(_NOTICE, None)
        if not username.strip() or not password:
            st.warning("Enter your username and password.", icon=":material/warning:")
            return
        try:
            signed = signin.authenticate(username, password, client_info=client_info())
            _begin(signed)
        except PortalError as exc:
            st.error(str(exc), icon=":material/error:")
            return
    st.rerun()
