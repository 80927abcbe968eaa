// The two-person rule: critical writes awaiting a second person, live, to approve
// (with one's own TOTP code) or decline (with the reason). One's own are never here.
import { field, h, replace } from "./dom.js";
import { formatTime, formatValue } from "./format.js";
import { commandTimeline, timelineList } from "./trail.js";

const INBOX = `subscription { pendingApprovals { requestedAt command { commandId device tag value requestedBy expiresAt } } }`;
const APPROVE = `mutation($id: ID!, $code: String!) { approveCommand(commandId: $id, code: $code) { status } }`;
const DECLINE = `mutation($id: ID!, $r: String!) { declineCommand(commandId: $id, reason: $r) { status } }`;

export function mount(container, { session }) {
  const list = h("div", { class: "inbox", "aria-live": "polite" }, "Waiting for the inbox…");
  replace(container, h("h1", { class: "screen-title" }, "Approvals"), list);

  function card({ command }) {
    const code = h("input", { name: "code", inputmode: "numeric", autocomplete: "one-time-code", maxlength: "6", pattern: "[0-9]{6}" });
    const reason = h("input", { name: "reason" });
    const problem = h("p", { class: "abnormal", role: "alert" });
    const steps = h("div");
    const act = async (query, variables) => {
      try {
        await session.query(query, { id: command.commandId, ...variables });
      } catch (error) {
        problem.textContent = `Refused: ${error.message}`;
      }
    };
    commandTimeline(session, command.commandId).then((timeline) => steps.replaceChildren(timelineList(timeline)), () => {});
    const value = typeof command.value === "boolean" ? formatValue(null, command.value) : formatValue(command.value);
    return h(
      "article",
      { class: "panel approval", "aria-label": `Approval of ${command.device} ${command.tag}`, "data-command": command.commandId },
      h("h2", {}, `${command.device} ${command.tag} = ${value}`),
      h("p", {}, `Requested by ${command.requestedBy}; lapses at ${formatTime(command.expiresAt)}.`),
      steps,
      h(
        "form",
        { onsubmit: (event) => (event.preventDefault(), act(APPROVE, { code: code.value })) },
        field("Your TOTP code", code),
        h("button", { type: "submit" }, "Approve"),
      ),
      h(
        "form",
        { onsubmit: (event) => (event.preventDefault(), act(DECLINE, { r: reason.value })) },
        field("Reason to decline", reason),
        h("button", { type: "submit" }, "Decline"),
      ),
      problem,
    );
  }

  return session.socket.subscribe(INBOX, {}, {
    next: ({ data }) => {
      const entries = data.pendingApprovals;
      replace(list, entries.length ? entries.map(card) : h("p", {}, "Nothing awaits your approval."));
    },
    error: (errors) => replace(list, h("p", { class: "abnormal" }, errors[0].message)),
  });
}
