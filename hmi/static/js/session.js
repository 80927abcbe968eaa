// The operator's session: tokens kept in memory only (never in storage), refreshed
// before they expire, and the end of the session (logout, expiry, an admin's
// endSession) announced as one "ended" event that sends the HMI back to login.
import { GraphQLError, post } from "./graphql.js";
import { LiveSocket } from "./socket.js";

const TOKENS = "accessToken refreshToken expiresAt sessionExpiresAt";
const LOGIN = `mutation($u: String!, $p: String!) { login(username: $u, password: $p) { ${TOKENS} } }`;
const REFRESH = `mutation($t: String!) { refreshToken(token: $t) { ${TOKENS} } }`;
const LOGOUT = "mutation { logout }";
const ME = "{ me { username fullName roles scopes actions } }";

// Refresh when this share of the token's life has passed (a 15 min token: after 12 min).
const REFRESH_AT = 0.8;

export class Session extends EventTarget {
  #tokens = null;
  #refreshTimer = null;
  me = null;
  socket = new LiveSocket(() => this.#tokens?.accessToken ?? "");

  constructor() {
    super();
    this.socket.addEventListener("unauthenticated", (event) => this.end(event.detail));
    this.socket.addEventListener("expired", () => this.refresh());
  }

  get active() {
    return this.#tokens !== null;
  }

  async login(username, password) {
    const data = await post(LOGIN, { u: username, p: password });
    this.#keep(data.login);
    this.me = (await this.query(ME)).me;
    this.socket.start();
  }

  /** A query or mutation with the access token; a session that ended ends here too. */
  async query(query, variables = {}) {
    try {
      return await post(query, variables, this.#tokens?.accessToken);
    } catch (error) {
      if (error instanceof GraphQLError && error.code === "unauthenticated" && this.active) {
        this.end(error.message);
      }
      throw error;
    }
  }

  /** New tokens for the refresh token: over the socket (which is then keyed with them) or HTTP. */
  async refresh() {
    if (!this.#tokens) return;
    const variables = { t: this.#tokens.refreshToken };
    try {
      const data = this.socket.ready
        ? await this.socket.execute(REFRESH, variables)
        : await post(REFRESH, variables);
      this.#keep(data.refreshToken);
    } catch (error) {
      if (error instanceof GraphQLError) this.end(`Session ended: ${error.message}`);
      else this.#schedule(5000); // the server is away: try again shortly
    }
  }

  async logout() {
    try {
      await post(LOGOUT, {}, this.#tokens?.accessToken);
    } finally {
      this.end(null);
    }
  }

  /** Forget the tokens and tell the HMI why (null: the user logged out). */
  end(reason) {
    if (!this.#tokens) return;
    this.#tokens = null;
    this.me = null;
    clearTimeout(this.#refreshTimer);
    this.socket.stop();
    this.dispatchEvent(new CustomEvent("ended", { detail: reason }));
  }

  /** May the user do ``action`` (on ``device`` in ``area``)? What the server also checks. */
  may(action, device = null, area = null) {
    if (!this.me?.actions.includes(action)) return false;
    if (device === null) return true;
    return this.me.scopes.some(
      (scope) => scope === "plant" || scope === `area:${area}` || scope === `device:${device}`,
    );
  }

  #keep(tokens) {
    this.#tokens = tokens;
    const lifeMs = Date.parse(tokens.expiresAt) - Date.now();
    this.#schedule(Math.max(1000, lifeMs * REFRESH_AT));
  }

  #schedule(delayMs) {
    clearTimeout(this.#refreshTimer);
    this.#refreshTimer = setTimeout(() => this.refresh(), delayMs);
  }
}
