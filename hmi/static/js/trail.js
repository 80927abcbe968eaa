// The full event trail of one command or alarm: every stored event of it, in order.
// Auditors read it from the event store (auditEvents); anyone else sees a command's
// timeline with its signatures (commandTimeline) and an alarm's journal entries.
import { h } from "./dom.js";
import { formatDateTime } from "./format.js";

const AUDIT = `query($id: ID!, $a: String) { auditEvents(aggregateId: $id, first: 200, after: $a) {
  events { position aggregateType version type at actor payload } endCursor hasNextPage } }`;
const TIMELINE = `query($id: ID!) { commandTimeline(commandId: $id) {
  version step status at actor detail signature { username fullName meaning method at emergency } } }`;

/** Every stored event of the aggregate ``id`` (auditors only). */
export async function auditTrail(session, id) {
  const events = [];
  let after = null;
  for (;;) {
    const page = (await session.query(AUDIT, { id, a: after })).auditEvents;
    events.push(...page.events);
    if (!page.hasNextPage) return events;
    after = page.endCursor;
  }
}

export function auditTable(events) {
  return h(
    "table",
    { class: "trail", "aria-label": "Event trail" },
    h("thead", {}, h("tr", {}, ["Position", "Event", "At", "By", "Fields"].map((title) => h("th", {}, title)))),
    h(
      "tbody",
      {},
      events.map((event) =>
        h(
          "tr",
          {},
          h("td", {}, event.position),
          h("td", {}, `${event.aggregateType}.${event.type} v${event.version}`),
          h("td", {}, formatDateTime(event.at)),
          h("td", {}, event.actor),
          h("td", {}, h("code", {}, JSON.stringify(event.payload))),
        ),
      ),
    ),
  );
}

export async function commandTimeline(session, id) {
  return (await session.query(TIMELINE, { id })).commandTimeline;
}

export function timelineList(steps) {
  return h(
    "ol",
    { class: "steps", "aria-label": "Command timeline" },
    steps.map((step) =>
      h(
        "li",
        { "data-status": step.status },
        h("strong", {}, step.step),
        ` ${step.status.toLowerCase()} · ${step.actor} · ${formatDateTime(step.at)}`,
        step.detail ? ` · ${step.detail}` : "",
        step.signature
          ? h(
              "span",
              { class: "signature" },
              ` signed by ${step.signature.fullName} (${step.signature.username}), ${step.signature.meaning}, ${step.signature.method}${step.signature.emergency ? ", emergency" : ""}`,
            )
          : "",
      ),
    ),
  );
}

/** A dialog with the trail of ``id`` (a command or an alarm). */
export async function showTrail(session, id, title) {
  const body = h("div", {}, "Loading…");
  const dialog = h(
    "dialog",
    { class: "panel wide", "aria-label": `Trail of ${title}` },
    h("h2", {}, `Trail: ${title}`),
    body,
    h("button", { type: "button", onclick: () => dialog.close() }, "Close"),
  );
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  try {
    body.replaceChildren(
      session.may("audit.read") ? auditTable(await auditTrail(session, id)) : timelineList(await commandTimeline(session, id)),
    );
  } catch (error) {
    body.textContent = error.message;
  }
}
