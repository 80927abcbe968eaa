// The auditor's view: the log's verification state (auditChain: the hash chain's head and
// the last signed checkpoint), the event trail of a command or an alarm, and the recent
// record of a user or an event type, straight from the event store (auditEvents).
import { field, h, replace } from "./dom.js";
import { formatDateTime } from "./format.js";
import { auditTable, auditTrail } from "./trail.js";

const RECENT = `query($u: String, $t: String, $s: DateTime) { auditEvents(user: $u, type: $t, since: $s, first: 200) {
  events { position aggregateId aggregateType version type at actor payload } hasNextPage } }`;
const HOUR_MS = 3600 * 1000;
const CHAIN = `{ auditChain { headPosition headHash eventsSinceCheckpoint
  lastCheckpoint { position chainHash signedAt keyId source holds } } }`;

/** The chain's state as sentences; a checkpoint the log no longer holds is abnormal. */
function chainState(chain) {
  const short = (hash) => (hash ? `${hash.slice(0, 16)}…` : "none");
  const since = chain.eventsSinceCheckpoint === 1 ? "1 event" : `${chain.eventsSinceCheckpoint} events`;
  const checkpoint = chain.lastCheckpoint;
  return [
    h("p", {}, chain.headPosition === null ? "The log is empty." : `Chain head: position ${chain.headPosition}, hash ${short(chain.headHash)}`),
    checkpoint
      ? h(
          "p",
          { class: checkpoint.holds ? "" : "abnormal", "data-holds": String(checkpoint.holds) },
          `Last signed checkpoint: position ${checkpoint.position}, ${formatDateTime(checkpoint.signedAt)}, key ${checkpoint.keyId} (${checkpoint.source}). `,
          checkpoint.holds
            ? `The log still holds the signed hash; ${since} since.`
            : "The log no longer holds the signed hash: the chain was rewritten since.",
        )
      : h("p", { class: "abnormal" }, "No checkpoint has been signed yet."),
    h("p", { class: "note" }, "The signatures and the whole chain are checked by plantcore audit verify."),
  ];
}

export function mount(container, { session }) {
  const id = h("input", { name: "aggregate", required: true, size: 40 });
  const user = h("input", { name: "user" });
  const type = h("input", { name: "type", placeholder: "Approved, Operator.RoleGranted" });
  const result = h("section", { "aria-label": "Audit result", "aria-live": "polite" });
  const show = async (load) => {
    replace(result, "Loading…");
    try {
      const events = await load();
      replace(result, events.length ? auditTable(events) : h("p", {}, "No events."));
    } catch (error) {
      replace(result, h("p", { class: "abnormal" }, error.message));
    }
  };
  const byId = h(
    "form",
    { class: "panel", "aria-label": "Trail of a command or alarm" },
    h("h2", {}, "Trail of a command or an alarm"),
    field("Command or alarm id", id),
    h("button", { type: "submit" }, "Show trail"),
  );
  byId.addEventListener("submit", (event) => {
    event.preventDefault();
    show(() => auditTrail(session, id.value.trim()));
  });
  const recent = h(
    "form",
    { class: "panel", "aria-label": "Recent events" },
    h("h2", {}, "The last hour's events"),
    field("User", user),
    field("Event type", type),
    h("button", { type: "submit" }, "Show events"),
  );
  recent.addEventListener("submit", (event) => {
    event.preventDefault();
    const variables = { u: user.value || null, t: type.value || null, s: new Date(Date.now() - HOUR_MS).toISOString() };
    show(async () => (await session.query(RECENT, variables)).auditEvents.events);
  });
  const chain = h("section", { class: "panel", "aria-label": "Log verification", "aria-live": "polite" });
  const loadChain = async () => {
    try {
      const state = (await session.query(CHAIN)).auditChain;
      replace(chain, h("h2", {}, "Log verification"), chainState(state), again);
    } catch (error) {
      replace(chain, h("h2", {}, "Log verification"), h("p", { class: "abnormal" }, error.message), again);
    }
  };
  const again = h("button", { type: "button", onclick: () => loadChain() }, "Check again");
  replace(container, h("h1", { class: "screen-title" }, "Audit"), chain, h("div", { class: "forms" }, byId, recent), result);
  loadChain();
  id.focus();
  return () => {};
}
