// Types of crier.js, the crier browser client. See DESIGN.md §2 for the wire protocol.

/** Close codes of the edge. */
export declare const CloseCode: Readonly<{
  NORMAL: 1000;
  GOING_AWAY: 1001;
  POLICY: 1008;
  TOO_BIG: 1009;
  AUTH_FAILED: 4001;
  TOKEN_EXPIRED: 4003;
  SLOW_CONSUMER: 4008;
  RATE_LIMITED: 4029;
  DISCONNECTED: 4030;
}>;

/** Where the client is in its life cycle. `closed` is final until `connect()` is called again. */
export type ConnectionState = "idle" | "connecting" | "authenticating" | "connected" | "reconnecting" | "closed";

/** Details of a state change. */
export interface StateInfo {
  /**
   * Close code that caused `reconnecting` or `closed`: the edge's (see `CloseCode`), the browser's (1006:
   * connection lost), or 4000 when the client gave up itself (ping unanswered, `getToken` failed).
   */
  code?: number;
  /** Close reason sent by the edge, if any. */
  reason?: string;
  /** Whether a reconnect is scheduled. */
  willReconnect?: boolean;
  /** Delay before the next attempt, in milliseconds (with `reconnecting`). */
  delayMs?: number;
  /** Consecutive failed attempts so far. */
  attempt?: number;
  /** The authenticated user (with `connected`). */
  userId?: string;
}

/** Where a notification came from. */
export interface NotificationMeta {
  /** The conversation, when the frame or payload names it. */
  conversationId?: string;
  /** Opaque recovery position; present when positions are on. */
  position?: string;
}

/** A notification's payload: the JSON object the backend published, verbatim. */
export type Notification = { type?: string; conversationId?: string; [field: string]: unknown };

export type NotificationCallback = (data: Notification, meta: NotificationMeta) => void;

export interface CrierOptions {
  /** Connection JWT. */
  token?: string;
  /**
   * Called for a fresh JWT at every (re)connect and before expiry; takes precedence over `token`. If it
   * throws or rejects, the client reconnects later with backoff.
   */
  getToken?: () => string | Promise<string>;
  /** Dev auth only (`crier dev`): authenticate as this user without a token. */
  userId?: string;
  /** Ask for positions (`?positions=1`) so reconnects resume with `since`. Default true. */
  positions?: boolean;
  /** First reconnect delay before jitter, ms. Default 500. */
  initialDelayMs?: number;
  /** Largest reconnect delay, ms. Default 30000. */
  maxDelayMs?: number;
  /** After 1001 (edge draining) or 4003, reconnect within [0, this) ms. Default 1000. */
  goingAwayJitterMs?: number;
  /** Smallest delay after 4029 (rate limited), ms. Default 10000. */
  rateLimitedDelayMs?: number;
  /** Idle time before an application ping, ms. Default 25000. */
  pingIntervalMs?: number;
  /** Reconnect when nothing arrives this long after a ping, ms. Default 10000. */
  pongTimeoutMs?: number;
  /** Refresh the token this long before it expires (needs `getToken`), ms. Default 60000. */
  refreshMarginMs?: number;
  /**
   * Reconnect after the edge closed an idle session (1000 "Session timeout", `--idle-timeout`). Default
   * false: the client stays closed until `connect()`.
   */
  reconnectAfterIdleTimeout?: boolean;
  /** Every state change. */
  onStateChange?: (state: ConnectionState, info: StateInfo) => void;
  /** Error frames not tied to a subscription with its own `onError`, and client-side problems. */
  onError?: (message: string, frame?: unknown) => void;
  /** Notifications of no current subscription (e.g. verbatim payloads without `conversationId`). */
  onNotification?: NotificationCallback;
  /** WebSocket implementation (tests, Node). Default: the global `WebSocket`. */
  WebSocket?: typeof WebSocket;
}

export interface SubscribeOptions {
  /** Resume after this position (normally tracked for you). */
  since?: string;
  /**
   * On the first subscribe only, also deliver the newest `last` (1..=100) retained notifications of the
   * conversation, oldest first, before live ones: the current state on page load. Reconnects use `since`.
   */
  last?: number;
  /** Subscription JWT for this conversation. */
  token?: string;
  /**
   * The edge confirmed the subscription. `recovered` is set when it was asked to resume with `since`
   * (`false`: what was missed is gone, e.g. trimmed; refetch). `position` comes with positions on.
   */
  onSubscribed?: (frame: { conversationId: string; recovered?: boolean; position?: string }) => void;
  /** The edge ended the subscription (e.g. "access revoked"); it is forgotten. */
  onUnsubscribed?: (reason: string) => void;
  /** An error frame about this conversation, e.g. "Access denied to conversation". */
  onError?: (message: string) => void;
}

export declare class CrierClient {
  /** `url` defaults to `/api/ws` on the page's host. */
  constructor(url?: string, options?: CrierOptions);
  readonly state: ConnectionState;
  /** The authenticated user while connected. */
  readonly userId: string | null;
  connect(): this;
  /** Closes for good (no reconnect); subscriptions are kept for a later `connect()`. */
  close(): void;
  /** Returns a function that removes this callback (and unsubscribes once none is left). */
  subscribe(conversationId: string, onNotification: NotificationCallback, options?: SubscribeOptions): () => void;
  unsubscribe(conversationId: string): void;
  subscriptions(): { conversationId: string; since?: string }[];
  /** Sends a refreshed token; resolves with the new expiry (unix seconds). */
  refresh(token?: string): Promise<number>;
}

/** `new CrierClient(url, options).connect()`. */
export declare function connect(url?: string, options?: CrierOptions): CrierClient;
