// One graphql-transport-ws connection for every live view, which reconnects by itself.
//
// Subscriptions are kept here and sent again after each reconnection (tagUpdates
// starts again with its snapshot, commandStatus with every step so far). The
// connection is keyed with the session's current access token; the session
// refreshes its tokens over this socket, so the socket outlives each token.
import { GraphQLError } from "./graphql.js";

const FIRST_RETRY_MS = 250;
const LONGEST_RETRY_MS = 5000;

export class LiveSocket extends EventTarget {
  #token;
  #socket = null;
  #acknowledged = false;
  #stopped = true;
  #retryMs = FIRST_RETRY_MS;
  #nextId = 1;
  #operations = new Map(); // id -> {payload, next, error, complete, once}
  state = "stopped"; // connecting, live, reconnecting

  /** ``token()`` gives the access token to open the connection with. */
  constructor(token) {
    super();
    this.#token = token;
  }

  get ready() {
    return this.#acknowledged;
  }

  start() {
    this.#stopped = false;
    this.#open();
  }

  stop() {
    this.#stopped = true;
    for (const operation of this.#operations.values()) operation.once?.reject(new Error("closed"));
    this.#operations.clear();
    this.#socket?.close(1000, "logged out");
    this.#socket = null;
  }

  /** A subscription; returns the function that ends it. */
  subscribe(query, variables, { next, error = () => {}, complete = () => {} }) {
    const id = String(this.#nextId++);
    this.#operations.set(id, { payload: { query, variables }, next, error, complete });
    if (this.#acknowledged) this.#send({ id, type: "subscribe", payload: { query, variables } });
    return () => {
      if (this.#operations.delete(id) && this.#acknowledged) this.#send({ id, type: "complete" });
    };
  }

  /** One query or mutation over the socket: its data, or a GraphQLError. */
  execute(query, variables) {
    return new Promise((resolve, reject) => {
      if (!this.#acknowledged) {
        reject(new Error("not connected"));
        return;
      }
      let data = null;
      const id = String(this.#nextId++);
      this.#operations.set(id, {
        payload: { query, variables },
        once: { reject },
        next: (payload) => (data = payload.data),
        error: (errors) => reject(new GraphQLError(errors)),
        complete: () => resolve(data),
      });
      this.#send({ id, type: "subscribe", payload: { query, variables } });
    });
  }

  #open() {
    const url = new URL("/graphql", window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(url, "graphql-transport-ws");
    this.#socket = socket;
    this.#state("connecting");
    socket.onopen = () => {
      this.#send({ type: "connection_init", payload: { authorization: `Bearer ${this.#token()}` } });
    };
    socket.onmessage = (event) => this.#receive(JSON.parse(event.data));
    socket.onclose = (event) => this.#closed(socket, event);
  }

  #receive(message) {
    if (message.type === "connection_ack") {
      this.#acknowledged = true;
      this.#retryMs = FIRST_RETRY_MS;
      this.#state("live");
      for (const [id, operation] of this.#operations) {
        if (operation.once) continue; // sent once; a lost answer was rejected on close
        this.#send({ id, type: "subscribe", payload: operation.payload });
      }
      return;
    }
    if (message.type === "ping") {
      this.#send({ type: "pong" });
      return;
    }
    const operation = this.#operations.get(message.id);
    if (!operation) return;
    if (message.type === "next") {
      if (message.payload.errors?.length) this.#failed(operation, message.payload.errors);
      else operation.next(message.payload);
    } else if (message.type === "error") {
      this.#operations.delete(message.id);
      this.#failed(operation, message.payload);
    } else if (message.type === "complete") {
      this.#operations.delete(message.id);
      operation.complete();
    }
  }

  #failed(operation, errors) {
    const ended = errors.find((error) => error.extensions?.code === "unauthenticated");
    if (ended && !operation.once) {
      // The session ended (logout elsewhere, an admin's endSession, expiry).
      this.dispatchEvent(new CustomEvent("unauthenticated", { detail: ended.message }));
    }
    operation.error(errors);
  }

  #closed(socket, event) {
    if (socket !== this.#socket) return;
    this.#acknowledged = false;
    for (const [id, operation] of this.#operations) {
      if (!operation.once) continue;
      this.#operations.delete(id);
      operation.once.reject(new Error("connection lost"));
    }
    if (this.#stopped) return;
    if (event.code === 4401) {
      // The token the socket was opened with is no longer good: the session decides.
      this.dispatchEvent(new CustomEvent("expired", { detail: event.reason }));
    }
    this.#state("reconnecting");
    setTimeout(() => this.#stopped || this.#open(), this.#retryMs);
    this.#retryMs = Math.min(this.#retryMs * 2, LONGEST_RETRY_MS);
  }

  #send(message) {
    if (this.#socket?.readyState === WebSocket.OPEN) this.#socket.send(JSON.stringify(message));
  }

  #state(state) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: state }));
  }
}
