// crier browser client: one WebSocket to a crier edge, speaking the protocol of DESIGN.md §2.
// Plain ES module, no dependencies, no build step. Types: crier.d.ts. Served by every edge at /crier.js.
//
//   const crier = connect("wss://notify.example.com/api/ws", { getToken: () => fetchToken() });
//   const off = crier.subscribe("c1", (data, meta) => console.log(data, meta.position));
//
// What it does for you: auth on `ready`, resubscribe after every reconnect (with `since`, the last position
// seen, when positions are on, so nothing is missed), reconnect with exponential backoff and jitter (never
// after 4001/1008/1009/4030, nor after the edge's idle timeout unless `reconnectAfterIdleTimeout`; promptly
// after 1001), application pings to notice dead connections, and token refresh before the token expires.

/** Close codes of the edge (DESIGN.md §2). */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  POLICY: 1008,
  TOO_BIG: 1009,
  AUTH_FAILED: 4001,
  TOKEN_EXPIRED: 4003,
  SLOW_CONSUMER: 4008,
  RATE_LIMITED: 4029,
  DISCONNECTED: 4030,
});

// Reconnecting would fail the same way (bad credentials, policy, a too-large frame) or defy an operator.
const TERMINAL = new Set([CloseCode.POLICY, CloseCode.TOO_BIG, CloseCode.AUTH_FAILED, CloseCode.DISCONNECTED]);

// The reason of the edge's 1000 close after `--idle-timeout` without client messages.
const IDLE_TIMEOUT_REASON = "Session timeout";

// Our own close code when the client gives up on a connection: pings unanswered, or no token to send
// (4000-4999 are free for applications; the edge never sends 4000).
const CLIENT_GAVE_UP = 4000;

const DEFAULTS = Object.freeze({
  positions: true,
  initialDelayMs: 500,
  maxDelayMs: 30_000,
  goingAwayJitterMs: 1_000,
  rateLimitedDelayMs: 10_000,
  pingIntervalMs: 25_000,
  pongTimeoutMs: 10_000,
  refreshMarginMs: 60_000,
  reconnectAfterIdleTimeout: false,
});

/** One connection to a crier edge, kept alive and resubscribed across reconnects. */
export class CrierClient {
  #url;
  #opts;
  #ws = null;
  #state = "idle";
  #userId = null;
  #attempt = 0;
  /** conversationId → { callbacks: Set, since: string|undefined, options } */
  #subs = new Map();
  #timers = { reconnect: 0, ping: 0, pong: 0, refresh: 0 };
  #refreshWaiters = [];

  /**
   * @param {string} [url] ws:// or wss:// URL of the edge; default: `/api/ws` on the page's host.
   * @param {import("./crier").CrierOptions} [options]
   */
  constructor(url, options = {}) {
    this.#opts = { ...DEFAULTS, ...options };
    this.#url = withPositions(url ?? defaultUrl(), this.#opts.positions);
  }

  /** "idle" | "connecting" | "authenticating" | "connected" | "reconnecting" | "closed" */
  get state() {
    return this.#state;
  }

  /** The user the edge authenticated, once connected. */
  get userId() {
    return this.#userId;
  }

  /** Opens the connection (again, after `close()`). */
  connect() {
    if (this.#ws || this.#state === "reconnecting") return this;
    this.#attempt = 0;
    this.#open();
    return this;
  }

  /** Closes for good: no reconnect until `connect()` is called again. Subscriptions are kept. */
  close() {
    this.#clearTimers();
    const ws = this.#detach();
    if (ws) ws.close(CloseCode.NORMAL, "client closed");
    this.#setState("closed", { code: CloseCode.NORMAL, reason: "client closed", willReconnect: false });
  }

  /**
   * Calls `onNotification(data, meta)` for every notification of `conversationId` until the returned function
   * is called. Several callbacks may share one conversation; the edge sees one subscription.
   */
  subscribe(conversationId, onNotification, options = {}) {
    let sub = this.#subs.get(conversationId);
    if (!sub) {
      sub = { callbacks: new Set(), since: options.since, options };
      this.#subs.set(conversationId, sub);
      if (this.#state === "connected") this.#sendSubscribe(conversationId, sub);
    }
    sub.callbacks.add(onNotification);
    return () => this.#removeCallback(conversationId, onNotification);
  }

  /** Drops every callback of `conversationId` and tells the edge. */
  unsubscribe(conversationId) {
    if (!this.#subs.delete(conversationId)) return;
    if (this.#state === "connected") this.#send({ action: "unsubscribe", conversationId });
  }

  /** The conversations subscribed to, and the last position seen in each (when positions are on). */
  subscriptions() {
    return [...this.#subs].map(([conversationId, sub]) => ({ conversationId, since: sub.since }));
  }

  /**
   * Sends `{"action":"refresh","token"}` (with `token`, or a fresh one from `getToken`); resolves with the
   * new expiry (unix seconds) from `refreshed`.
   */
  async refresh(token) {
    const fresh = token ?? (await this.#token());
    if (!fresh) throw new Error("crier: refresh needs a token or a getToken option");
    const answer = new Promise((resolve, reject) => this.#refreshWaiters.push({ resolve, reject }));
    if (!this.#send({ action: "refresh", token: fresh })) {
      this.#settleRefresh(new Error("crier: not connected"));
    }
    return answer;
  }

  #open() {
    this.#userId = null;
    this.#setState("connecting", { attempt: this.#attempt });
    const ws = new (this.#opts.WebSocket ?? WebSocket)(this.#url);
    this.#ws = ws;
    ws.onopen = () => this.#setState("authenticating");
    ws.onmessage = (event) => this.#onMessage(event.data);
    ws.onclose = (event) => this.#onClose(event.code, event.reason);
    ws.onerror = () => {}; // A close event with the details always follows.
  }

  #onMessage(text) {
    this.#alive();
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return this.#opts.onError?.("unparseable frame from server", text);
    }
    switch (msg?.type) {
      case "ready":
        return void this.#authenticate();
      case "authenticated":
        return this.#onAuthenticated(msg);
      case "subscribed":
        return this.#onSubscribed(msg);
      case "unsubscribed":
        return this.#onUnsubscribed(msg);
      case "refreshed":
        this.#scheduleRefresh(msg.expiresAt);
        return this.#settleRefresh(null, msg.expiresAt);
      case "pong":
        return;
      case "error":
        return this.#onServerError(msg);
      case "notification":
        if (this.#opts.positions && "data" in msg) {
          return this.#deliver(msg.conversationId, msg.data, msg.position);
        }
    }
    // Without positions a notification is the published payload, verbatim.
    this.#deliver(msg?.conversationId, msg, undefined);
  }

  async #authenticate() {
    const ws = this.#ws;
    let token;
    try {
      token = await this.#token();
    } catch (err) {
      // Not the edge's verdict on us (that would be 4001): try again later with backoff.
      this.#opts.onError?.(`getToken failed: ${err}`);
      if (ws === this.#ws) this.#drop("token unavailable");
      return;
    }
    if (ws !== this.#ws) return; // Closed while the token was fetched.
    if (token) this.#send({ action: "auth", token });
    else if (this.#opts.userId) this.#send({ action: "auth", userId: this.#opts.userId });
    else this.#opts.onError?.("no token, getToken or userId option: cannot authenticate");
  }

  #onAuthenticated(msg) {
    this.#userId = msg.userId;
    this.#attempt = 0;
    this.#setState("connected", { userId: msg.userId });
    for (const [conversationId, sub] of this.#subs) this.#sendSubscribe(conversationId, sub);
    this.#schedulePing();
    this.#token()
      .then((token) => this.#scheduleRefresh(jwtExpiry(token)))
      .catch(() => {});
  }

  #sendSubscribe(conversationId, sub) {
    const frame = { action: "subscribe", conversationId };
    if (this.#opts.positions && sub.since) frame.since = sub.since;
    // `last` only until the edge confirmed once: after that, reconnects resume with `since`.
    else if (sub.options.last && !sub.confirmed) frame.last = sub.options.last;
    if (sub.options.token) frame.token = sub.options.token;
    this.#send(frame);
  }

  #removeCallback(conversationId, callback) {
    const sub = this.#subs.get(conversationId);
    if (sub?.callbacks.delete(callback) && sub.callbacks.size === 0) this.unsubscribe(conversationId);
  }

  #onSubscribed(msg) {
    const sub = this.#subs.get(msg.conversationId);
    if (!sub) return;
    sub.confirmed = true;
    // With positions the edge says where to resume if we drop before the next notification arrives.
    if (this.#opts.positions && msg.position) sub.since = msg.position;
    sub.options.onSubscribed?.(msg);
  }

  #onUnsubscribed(msg) {
    const sub = this.#subs.get(msg.conversationId);
    // A reason means the server ended it (access revoked, log unavailable): forget it, tell the owner.
    if (!sub || !msg.reason) return;
    this.#subs.delete(msg.conversationId);
    sub.options.onUnsubscribed?.(msg.reason);
  }

  #onServerError(msg) {
    const sub = msg.conversationId && this.#subs.get(msg.conversationId);
    if (sub?.options.onError) sub.options.onError(msg.message);
    else this.#opts.onError?.(msg.message, msg);
    if (this.#refreshWaiters.length && /token|refresh/i.test(msg.message ?? "")) {
      this.#settleRefresh(new Error(msg.message));
    }
  }

  #deliver(conversationId, data, position) {
    const sub = conversationId !== undefined ? this.#subs.get(conversationId) : undefined;
    const meta = { conversationId, position };
    if (!sub) return this.#opts.onNotification?.(data, meta);
    if (position) sub.since = position;
    for (const callback of sub.callbacks) {
      try {
        callback(data, meta);
      } catch (err) {
        console.error("crier: notification callback threw", err);
      }
    }
  }

  #onClose(code, reason) {
    this.#clearTimers();
    this.#detach();
    this.#settleRefresh(new Error("crier: connection closed"));
    const idledOut = code === CloseCode.NORMAL && reason === IDLE_TIMEOUT_REASON;
    if (TERMINAL.has(code) || (idledOut && !this.#opts.reconnectAfterIdleTimeout)) {
      return this.#setState("closed", { code, reason, willReconnect: false });
    }
    const delayMs = this.#reconnectDelay(code);
    this.#setState("reconnecting", { code, reason, willReconnect: true, delayMs, attempt: this.#attempt });
    this.#timers.reconnect = setTimeout(() => {
      this.#timers.reconnect = 0;
      this.#open();
    }, delayMs);
  }

  #reconnectDelay(code) {
    const o = this.#opts;
    if (code === CloseCode.GOING_AWAY || code === CloseCode.TOKEN_EXPIRED) {
      // A draining edge (or a token to renew) is not a failure: come back soon, spread over a window.
      this.#attempt = 0;
      return Math.random() * o.goingAwayJitterMs;
    }
    const ceiling = Math.min(o.maxDelayMs, o.initialDelayMs * 2 ** this.#attempt++);
    const delay = ceiling / 2 + (Math.random() * ceiling) / 2; // "equal jitter"
    return code === CloseCode.RATE_LIMITED ? Math.max(delay, o.rateLimitedDelayMs) : delay;
  }

  #schedulePing() {
    clearTimeout(this.#timers.ping);
    this.#timers.ping = setTimeout(() => {
      this.#send({ action: "ping" });
      this.#timers.pong = setTimeout(() => this.#drop("keepalive timeout"), this.#opts.pongTimeoutMs);
    }, this.#opts.pingIntervalMs);
  }

  // Any frame proves the connection alive.
  #alive() {
    clearTimeout(this.#timers.pong);
    this.#timers.pong = 0;
    if (this.#state === "connected") this.#schedulePing();
  }

  // Client-side failure: close the socket without waiting for the peer (a dead one never answers a close)
  // and go through the usual reconnect path.
  #drop(reason) {
    const ws = this.#detach();
    if (ws) ws.close(CLIENT_GAVE_UP, reason);
    this.#onClose(CLIENT_GAVE_UP, reason);
  }

  #scheduleRefresh(expiresAt) {
    clearTimeout(this.#timers.refresh);
    if (!this.#opts.getToken || !Number.isFinite(expiresAt)) return;
    const inMs = Math.max(0, expiresAt * 1000 - Date.now() - this.#opts.refreshMarginMs);
    this.#timers.refresh = setTimeout(() => {
      this.refresh().catch((err) => this.#opts.onError?.(`token refresh failed: ${err.message}`));
    }, inMs);
  }

  #settleRefresh(error, expiresAt) {
    for (const waiter of this.#refreshWaiters.splice(0)) {
      if (error) waiter.reject(error);
      else waiter.resolve(expiresAt);
    }
  }

  async #token() {
    if (this.#opts.getToken) return await this.#opts.getToken();
    return this.#opts.token ?? null;
  }

  #send(frame) {
    if (this.#ws?.readyState !== 1) return false;
    this.#ws.send(JSON.stringify(frame));
    return true;
  }

  #detach() {
    const ws = this.#ws;
    this.#ws = null;
    if (ws) ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    return ws;
  }

  #clearTimers() {
    for (const name of Object.keys(this.#timers)) {
      clearTimeout(this.#timers[name]);
      this.#timers[name] = 0;
    }
  }

  #setState(state, info = {}) {
    this.#state = state;
    try {
      this.#opts.onStateChange?.(state, info);
    } catch (err) {
      console.error("crier: onStateChange threw", err);
    }
  }
}

/** `new CrierClient(url, options).connect()`. */
export function connect(url, options) {
  return new CrierClient(url, options).connect();
}

function defaultUrl() {
  const scheme = globalThis.location?.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${globalThis.location?.host ?? "127.0.0.1:3000"}/api/ws`;
}

function withPositions(url, positions) {
  if (!positions) return url;
  const parsed = new URL(url, globalThis.location?.href);
  parsed.searchParams.set("positions", "1");
  return parsed.toString();
}

/** `exp` of a JWT (unix seconds), or undefined when `token` is not a readable JWT. */
function jwtExpiry(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).exp;
  } catch {
    return undefined;
  }
}
