// Writing a tag: the value (checked against the tag's limits before it is sent), the
// TOTP confirmation, then the command's steps live from commandStatus until it ends.
// An emergency value (a stop) needs no code: it is sent at once.
import { field, h, replace } from "./dom.js";
import { formatTime, formatValue } from "./format.js";

const REQUEST = `mutation($d: String!, $t: String!, $v: JSON) {
  requestCommand(device: $d, tag: $t, value: $v) { commandId challenge expiresAt } }`;
const CONFIRM = `mutation($id: ID!, $code: String!) { confirmCommand(commandId: $id, code: $code) { status } }`;
const CANCEL = `mutation($id: ID!) { cancelCommand(commandId: $id) { status } }`;
const STATUS = `subscription($id: ID!) { commandStatus(commandId: $id) { step status at actor detail } }`;

/** The value typed, as the tag takes it, or a message saying what is wrong with it. */
export function checkValue(tag, text) {
  if (tag.kind === "bool") {
    if (text === "true" || text === "false") return { value: text === "true" };
    return { problem: "Choose on or off." };
  }
  if (text.trim() === "") return { problem: "Enter a value." };
  const value = Number(text);
  if (!Number.isFinite(value)) return { problem: "Enter a number." };
  if (tag.kind === "integer" && !Number.isInteger(value)) return { problem: "Enter a whole number." };
  if (tag.low !== null && value < tag.low) return { problem: `At least ${tag.low}.` };
  if (tag.high !== null && value > tag.high) return { problem: `At most ${tag.high}.` };
  return { value };
}

function dialog(title, ...content) {
  const element = h("dialog", { class: "panel", "aria-label": title }, h("h2", {}, title), ...content);
  element.addEventListener("close", () => element.remove());
  document.body.append(element);
  element.showModal();
  return element;
}

export function openWriteDialog(session, device, tag, cells) {
  const current = cells.current;
  const input =
    tag.kind === "bool"
      ? h("select", { name: "value" }, h("option", { value: "true" }, "on"), h("option", { value: "false" }, "off"))
      : h("input", {
          name: "value",
          type: "number",
          inputmode: "decimal",
          min: tag.low,
          max: tag.high,
          step: tag.kind === "integer" ? "1" : "any",
          required: true,
        });
  const problem = h("p", { class: "abnormal", role: "alert" });
  const steps = h("ol", { class: "steps", "aria-label": "Command steps", "aria-live": "polite" });
  const body = h("div", { class: "write-body" });
  const close = h("button", { type: "button", onclick: () => element.close() }, "Close");
  // The value is checked here, with a message of ours, not by the browser's own bubbles.
  const form = h(
    "form",
    { novalidate: true },
    h("p", {}, `Now: ${formatValue(current.value, current.boolValue)} ${tag.unit}`),
    tag.low !== null ? h("p", {}, `Limits: ${tag.low} – ${tag.high} ${tag.unit}`) : null,
    tag.critical ? h("p", { class: "note" }, "Critical: a second person approves this write.") : null,
    field(`New value of ${tag.name}`, input),
    problem,
    h("button", { type: "submit" }, "Request"),
  );
  replace(body, form);
  const element = dialog(`Write ${device.id} ${tag.name}`, body, steps, close);
  input.focus();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const checked = checkValue(tag, input.value);
    if (checked.problem) {
      problem.textContent = checked.problem;
      input.focus();
      return;
    }
    try {
      const ticket = (await session.query(REQUEST, { d: device.id, t: tag.name, v: checked.value })).requestCommand;
      followSteps(session, ticket.commandId, steps, element);
      if (ticket.challenge === "totp") askCode(session, ticket, body, element);
      else replace(body, h("p", {}, "Sent without a code (emergency action)."));
    } catch (error) {
      problem.textContent = `Refused: ${error.message}`;
    }
  });
}

function askCode(session, ticket, body, element) {
  const code = h("input", {
    name: "code",
    inputmode: "numeric",
    autocomplete: "one-time-code",
    pattern: "[0-9]{6}",
    maxlength: "6",
    required: true,
  });
  const problem = h("p", { class: "abnormal", role: "alert" });
  const cancel = h("button", {
    type: "button",
    onclick: async () => {
      await session.query(CANCEL, { id: ticket.commandId }).catch(() => {});
      element.close();
    },
  }, "Cancel command");
  const form = h(
    "form",
    {},
    h("p", {}, `Answer by ${formatTime(ticket.expiresAt)} with your authenticator's code.`),
    field("TOTP code", code),
    problem,
    h("button", { type: "submit" }, "Confirm"),
    cancel,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await session.query(CONFIRM, { id: ticket.commandId, code: code.value });
      replace(body, h("p", { class: "done" }, "Confirmed."));
      element.querySelector("button:last-of-type")?.focus();
    } catch (error) {
      problem.textContent = `Refused: ${error.message}`;
      code.select();
    }
  });
  replace(body, form);
  code.focus();
}

/** The command's steps as they are recorded, until it ends. */
export function followSteps(session, commandId, list, element) {
  const stop = session.socket.subscribe(STATUS, { id: commandId }, {
    next: ({ data }) => {
      const step = data.commandStatus;
      list.append(
        h(
          "li",
          { "data-status": step.status },
          h("strong", {}, step.step),
          ` ${step.status.toLowerCase()} · ${step.actor} · ${formatTime(step.at)}`,
          step.detail ? ` · ${step.detail}` : "",
        ),
      );
    },
    error: (errors) => list.append(h("li", { class: "abnormal" }, errors[0].message)),
  });
  element?.addEventListener("close", stop);
  return stop;
}

export async function sendEmergency(session, device, tag) {
  const value = tag.emergencyValues[0];
  const steps = h("ol", { class: "steps", "aria-label": "Command steps", "aria-live": "polite" });
  const body = h("p", {}, `${tag.name} = ${formatValue(null, value)}: no code needed.`);
  const element = dialog(`Emergency stop ${device.id}`, body, steps, h("button", { type: "button", onclick: () => element.close() }, "Close"));
  try {
    const ticket = (await session.query(REQUEST, { d: device.id, t: tag.name, v: value })).requestCommand;
    followSteps(session, ticket.commandId, steps, element);
  } catch (error) {
    body.textContent = `Refused: ${error.message}`;
  }
}
